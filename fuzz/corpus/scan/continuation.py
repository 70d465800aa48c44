x = a.\
    __class__ + \
    1
