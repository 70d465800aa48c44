x = f"{a!r:>{w}} {f'{b}'} {c=} {{d}} \N{DASH}"
rf'{x}' F'''{
y
}'''
