def handle(action, payload):
    if action == "ping":
        return "pong"
    hoard = []
    while True:
        # bytes * n writes every page, so the memory is really used, not just reserved.
        hoard.append(b"x" * (8 << 20))
