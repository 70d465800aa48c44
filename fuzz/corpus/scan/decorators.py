@eval
@a.b(c=exec)
class K(metaclass=M, **kw): pass
