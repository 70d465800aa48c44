"""The program that starts warden's worker inside a Docker container.

The container's attached stdio is the host's channel: this program moves the frames between
stdin/stdout and a socket pair, so that ``warden.guest.worker.serve`` runs unchanged, and
sends whatever the code inside prints to fd 1 to stderr, keeping the frame stream clean. It
adds two ops to the tool layer's: ``exec`` reports the container cgroup's counters before and
after the command (the host cannot read them on the call path), and ``cgroup_stats``.

Started as ``python3 -I -c BOOT <entry> <data_dir> <areas>`` (providers.docker.config),
under any Python 3.10+ of the image: it imports only the standard library, warden.wire and
warden.errors.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import Any

from warden.guest import toolops, worker
from warden.wire import ops as op_names

__all__ = ["cgroup_stats", "main"]


def _pump_in(rx: int, theirs: socket.socket) -> None:
    try:
        while True:
            data = os.read(rx, 1 << 20)
            if not data:
                break
            theirs.sendall(data)
    except OSError:
        pass
    finally:
        try:
            theirs.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _pump_out(theirs: socket.socket, tx: int) -> None:
    try:
        while True:
            data = theirs.recv(1 << 20)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(tx, view):]
    except OSError:
        pass


def _read_kv(path: str) -> dict[str, int]:
    try:
        with open(path) as f:
            return {k: int(v) for k, v in (line.split() for line in f if len(line.split()) == 2)}
    except (OSError, ValueError):
        return {}


def _read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def cgroup_stats() -> dict[str, int]:
    """The container cgroup's counters, from its own view of /sys/fs/cgroup (v1 or v2)."""
    v1 = "/sys/fs/cgroup/memory/memory.oom_control"
    if os.path.exists(v1):
        oom = _read_kv(v1).get("oom_kill", 0)
        mem_max = _read_int("/sys/fs/cgroup/memory/memory.failcnt")
        peak = _read_int("/sys/fs/cgroup/memory/memory.max_usage_in_bytes")
        pids_max = _read_kv("/sys/fs/cgroup/pids/pids.events").get("max", 0)
    else:
        ev = _read_kv("/sys/fs/cgroup/memory.events")
        oom, mem_max = ev.get("oom_kill", 0), ev.get("max", 0)
        peak = _read_int("/sys/fs/cgroup/memory.peak")
        pids_max = _read_kv("/sys/fs/cgroup/pids.events").get("max", 0)
    return {"oom_kills": oom, "memory_max": mem_max, "peak": peak, "pids_max": pids_max}


def _disk_full(areas: list[str]) -> bool:
    for area in areas:
        try:
            st = os.statvfs(area)
        except OSError:
            continue
        if st.f_bavail == 0:
            return True
    return False


def _no_plugin(action: str, payload: object) -> object:
    raise LookupError(f"this sandbox runs no plugin, so action {action!r} has no handler; use "
                      "call_fn or run_python")


def main(argv: list[str]) -> None:
    """``argv``: the plugin's entry file, its data directory and the writable areas joined by
    ':' (each may be empty). Serves until the host closes stdin; never returns."""
    entry, data_dir = argv[0] or None, argv[1] or None
    worker.log_to_stderr()
    areas = [a for a in argv[2].split(":") if a]
    rx, tx = os.dup(0), os.dup(1)
    nul = os.open("/dev/null", os.O_RDONLY)
    os.dup2(nul, 0)
    os.close(nul)
    os.dup2(2, 1)
    ours, theirs = socket.socketpair()
    threading.Thread(target=_pump_in, args=(rx, theirs), daemon=True).start()
    out = threading.Thread(target=_pump_out, args=(theirs, tx), daemon=True)
    out.start()

    def op_exec(msg: dict, fds: list[int], used: set[int]) -> Any:
        before = cgroup_stats()
        result = toolops.op_exec(msg, fds, used)
        result["cg_before"], result["cg_after"] = before, cgroup_stats()
        result["disk_full"] = _disk_full(areas)
        return result

    def op_cgroup_stats(msg: dict, fds: list[int], used: set[int]) -> Any:
        return cgroup_stats()

    if entry:
        path = entry

        def factory() -> object:
            return worker.load_entry(path)
    else:
        def factory() -> object:
            return worker.Handler(_no_plugin)
    ops = {**toolops.OPS, op_names.EXEC: op_exec, op_names.CGROUP_STATS: op_cgroup_stats}
    code = 70
    try:
        code = worker.serve(ours.detach(), factory, data_dir=data_dir, extra_ops=ops) or 0
    finally:
        out.join(5)
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
