def handle(action, payload):
    if action == "ping":
        return "pong"
    with open(payload, "rb") as f:
        return f.read()
