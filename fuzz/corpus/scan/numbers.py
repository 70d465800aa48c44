x = 0x_1f + 0o17 + 0b1_0 + 1_000.5e-3j + .5 + 1if x else 2
