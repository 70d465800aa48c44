"""Worker ops of background processes (``Sandbox.spawn``): start, read, write, signal, list.

The table and its pump are warden.guest.procs. Each op answers at once, except ``proc_read``,
which waits at most MAX_WAIT_S for output or the exit, so that the worker goes back to
serving other requests soon. A pid the table does not know is answered with ``{"gone":
True}``; a write to a closed stdin with ``{"closed": True}``: states of the process, not
errors of the worker.
"""

from __future__ import annotations

import errno
import os
import select
import shutil
import time

from warden.errors import ProtocolError
from warden.guest import procs
from warden.guest.cmdargs import command_cwd, command_env
from warden.wire import ops
from warden.wire.streams import STREAM_CHUNK

__all__ = ["MAX_WAIT_S", "OPS"]

MAX_WAIT_S = 5.0
# How long a write waits for the process to read before it answers with what went in.
_WRITE_WAIT_S = 1.0


def _argv(msg: dict) -> list[str]:
    argv = msg.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ProtocolError("proc_start needs 'argv', a non-empty list of strings")
    return argv


def _pid(msg: dict) -> int:
    pid = msg.get("pid")
    if type(pid) is not int or pid <= 0:
        raise ProtocolError("'pid' must be a process id")
    return pid


def _find(msg: dict) -> procs.Proc | None:
    try:
        return procs.table.get(_pid(msg))
    except ProcessLookupError:
        return None


def op_proc_start(msg: dict, fds: list[int], used: set[int]) -> dict:
    """A process with pipes, or with ``tty`` ([cols, rows]) on a pseudo-terminal; ``argv``
    nil with a tty is a login shell (bash, else sh)."""
    tty = _size(msg.get("tty")) if msg.get("tty") is not None else None
    if tty is not None and msg.get("argv") is None:
        argv = [shutil.which("bash") or "/bin/sh", "-l"]
    else:
        argv = _argv(msg)
    stdin = msg.get("stdin", True)
    if type(stdin) is not bool:
        raise ProtocolError("proc_start 'stdin' must be true or false")
    proc = procs.table.start(argv, env=command_env(msg), cwd=command_cwd(msg.get("cwd")),
                             stdin=stdin, tty=tty)
    return {"pid": proc.pid, "started": proc.started}


def _size(value: object) -> tuple[int, int]:
    if type(value) is not list or len(value) != 2 or not all(
            type(v) is int and 1 <= v <= 0xFFFF for v in value):
        raise ProtocolError("'tty' must be [columns, rows], each from 1 to 65535")
    return value[0], value[1]


def op_proc_resize(msg: dict, fds: list[int], used: set[int]) -> dict:
    cols, rows = _size(msg.get("size"))
    proc = _find(msg)
    if proc is None:
        return {"gone": True}
    with procs.table.lock:
        procs.resize(proc, cols, rows)
    return {}


def op_proc_read(msg: dict, fds: list[int], used: set[int]) -> dict:
    """Output from ``offset`` (at most ``max`` bytes, at least one chunk), waiting up to
    ``wait`` seconds for some; with the exit once the process has ended and all of its
    output up to ``next`` is in the reply."""
    offset, wait, most = msg.get("offset"), msg.get("wait", 0.0), msg.get("max")
    if type(offset) is not int or offset < 0:
        raise ProtocolError("proc_read 'offset' must be a whole number of bytes")
    if type(wait) not in (int, float) or not 0 <= wait <= MAX_WAIT_S:
        raise ProtocolError(f"proc_read 'wait' must be seconds from 0 to {MAX_WAIT_S:g}")
    if type(most) is not int or most < STREAM_CHUNK:
        raise ProtocolError(f"proc_read 'max' must be at least {STREAM_CHUNK} bytes")
    proc = _find(msg)
    if proc is None:
        return {"gone": True}
    procs.table.wait_for(proc, offset, float(wait))
    with procs.table.lock:
        chunks, after, lost = proc.read(offset, most)
        status = proc.status if after >= proc.end else None
        cpu = proc.cpu
    reply = {"chunks": chunks, "next": after, "lost": lost, "exit": None}
    if status is not None:
        code = os.waitstatus_to_exitcode(status)
        reply["exit"] = {"exit_code": code if code >= 0 else None,
                         "signal": -code if code < 0 else None, "cpu": cpu[0] + cpu[1],
                         "cpu_user": cpu[0], "cpu_system": cpu[1]}
    return reply


def op_proc_write(msg: dict, fds: list[int], used: set[int]) -> dict:
    """Write ``data`` to the process's stdin: what it takes within _WRITE_WAIT_S."""
    data = msg.get("data")
    if not isinstance(data, bytes):
        raise ProtocolError("proc_write needs 'data' as bytes")
    proc = _find(msg)
    if proc is None:
        return {"gone": True}
    view, done = memoryview(data), 0
    deadline = time.monotonic() + _WRITE_WAIT_S
    while done < len(view):
        with procs.table.lock:
            pipe = proc.feed
            if pipe is None or pipe.closed or proc.status is not None:
                return {"closed": True, "written": done}
            fd = pipe.fileno()
            try:
                done += os.write(fd, view[done:done + STREAM_CHUNK])
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
                return {"closed": True, "written": done}
        left = deadline - time.monotonic()
        if left <= 0:
            break
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        poller.poll(max(1, int(left * 1000)))
    return {"written": done}


def op_proc_close_stdin(msg: dict, fds: list[int], used: set[int]) -> dict:
    proc = _find(msg)
    if proc is None:
        return {"gone": True}
    with procs.table.lock:
        if proc.feed is not None:
            procs._close_quietly(proc.feed)
    return {}


def op_proc_signal(msg: dict, fds: list[int], used: set[int]) -> dict:
    """Send ``signal`` to the process's group (itself and what it started); nothing once it
    has been reaped, so that a reused pid is never signalled."""
    sig = msg.get("signal")
    if type(sig) is not int or not 0 < sig < 65:
        raise ProtocolError("proc_signal 'signal' must be a signal number")
    proc = _find(msg)
    if proc is None:
        return {"gone": True}
    with procs.table.lock:
        if proc.status is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass  # exited this instant; the pump reaps it
    return {}


def op_proc_list(msg: dict, fds: list[int], used: set[int]) -> list[dict]:
    """Live processes started through warden: pid, argv, start time, CPU seconds so far."""
    with procs.table.lock:
        live = [p for p in procs.table.procs.values() if p.status is None]
    return [{"pid": p.pid, "argv": p.argv, "started": p.started, "cpu": _cpu(p.pid)}
            for p in live]


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """User and system seconds of ``pid`` and its waited-for children (proc(5) stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


OPS = {ops.PROC_START: op_proc_start, ops.PROC_READ: op_proc_read,
       ops.PROC_WRITE: op_proc_write, ops.PROC_CLOSE_STDIN: op_proc_close_stdin,
       ops.PROC_SIGNAL: op_proc_signal, ops.PROC_LIST: op_proc_list,
       ops.PROC_RESIZE: op_proc_resize}
