import os
import time


def handle(action, payload):
    if action == "ping":
        return "pong"
    if action == "eagain":
        # The same error a refused fork raises, with the pids limit not reached: the engine
        # must report it as the plugin's own error.
        raise BlockingIOError(11, "Resource temporarily unavailable")
    # Fork until the kernel refuses; each child tries to multiply as well, then holds its
    # slot. The refusal (BlockingIOError, EAGAIN) is not caught: a bomb does not stop.
    while True:
        if os.fork() == 0:
            try:
                os.fork()
            except OSError:
                pass
            time.sleep(3600)
            os._exit(0)
