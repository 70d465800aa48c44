f = lambda a=lambda b: b, *c, **d: a
def g(x, /, y=eval, *, z: int = 1, **k) -> exec: pass
