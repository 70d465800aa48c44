import os
import time


def handle(action, payload):
    if action == "ping":
        return "pong"
    children = []
    refused = None
    try:
        while len(children) < 10000:
            pid = os.fork()
            if pid == 0:
                # Each child tries to multiply as well, then holds its slot.
                try:
                    os.fork()
                except OSError:
                    pass
                time.sleep(3600)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        refused = f"{type(exc).__name__}: [Errno {exc.errno}] {exc.strerror}"
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return {"forked": len(children), "refused": refused}
