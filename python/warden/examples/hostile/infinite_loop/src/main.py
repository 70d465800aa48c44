def handle(action, payload):
    if action == "ping":
        return "pong"
    n = 0
    while True:
        n += 1
