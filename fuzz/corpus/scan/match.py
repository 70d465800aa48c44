match p:
    case C(a=1, b=[x, *y]) if eval(x):
        pass
    case {'k': v, **rest} | _:
        pass
