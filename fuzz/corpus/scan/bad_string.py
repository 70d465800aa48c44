x = 'abc
y = '''abc
