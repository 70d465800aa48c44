"""A fork server inside a sandbox: the worker's entry (``handle(action, payload)``) for
warden.ForkServer.

The worker that loads this entry becomes the *collector*: it holds the channel to the host and
never runs setup or any input. On ``setup`` it starts the *forker* (warden.guest.forker), a
fresh interpreter that runs setup and then forks one child per input. On ``run`` it feeds each input to its child
through a pipe only that child reads, collects the child's result, its stderr and the
forker's report of how it ended, and answers the host with one record per input:

    [kind, wait_status, timed_out, peak_rss_kib, cpu_us, duration_ns, result, stderr_tail]

``result`` is the child's bytes as warden.guest.carry wrote them (None when it wrote none,
the host decodes them), ``stderr_tail`` the last bytes of what it wrote to stderr (a fatal
signal's Python stack among them). Actions:

    setup  {source, filename, entry, path, wall_s, cpu_s, memory_bytes, result_cap}
           -> {"pid": the forker's pid}; setup's exception as the call's error
    run    {inputs: [bytes]} -> [record, ...]
"""

from __future__ import annotations

import fcntl
import os
import select
import sys
from typing import Any

from warden.errors import PluginError, ProtocolError
from warden.guest import carry, forker
from warden.guest.childguard import prctl

__all__ = ["handle"]

_HEADER = forker._HEADER
_STDERR_TAIL = 16 << 10
_SETUP_REPLY_CAP = forker._SETUP_REPLY_CAP
_PR_SET_DUMPABLE = 4

_state: dict[str, Any] = {}


def _nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


def _drain(fd: int, keep: int) -> bytes:
    """What can be read from ``fd`` now, the last ``keep`` bytes of it."""
    got = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return got
        if not chunk:
            return got
        got = (got + chunk)[-keep:] if keep else b""


def _spawn_forker(pipes: dict[str, int]) -> int:
    """Start the forker, a fresh interpreter with only what it needs, its pipes at
    forker.FORKER_FDS and TOLD_FD, stdin and stdout /dev/null; returns its pid."""
    f = forker.FORKER_FDS
    at = {"ctl": f.ctl, "status": f.status, "inp": f.inp, "result": f.result, "err": 2,
          "told": forker.TOLD_FD}
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    high: dict[str, int] = {}
    try:
        # Moved above every target first, so that no dup2 overwrites a pipe still to move.
        for name, fd in pipes.items():
            high[name] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64)
        actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1)]
        actions += [(os.POSIX_SPAWN_DUP2, high[name], at[name]) for name in at]
        # The collector's own path without the directory of its entry file.
        argv = [sys.executable, "-I", "-c", forker.BOOT, *sys.path]
        return os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions)
    finally:
        os.close(null)
        _close_all(tuple(high.values()))


def _setup(msg: dict) -> dict:
    if _state:
        raise ProtocolError("this fork server is set up already")
    sys.path[:] = [p for p in sys.path if p != os.path.dirname(os.path.abspath(__file__))]
    ctl_r, ctl_w = os.pipe()
    st_r, st_w = os.pipe()
    in_r, in_w = os.pipe()
    res_r, res_w = os.pipe()
    err_r, err_w = os.pipe()
    told_r, told_w = os.pipe()
    # Non-dumpable: a child, same user but without capabilities, cannot open this process's
    # /proc/<pid>/mem (the forker makes itself so).
    prctl(_PR_SET_DUMPABLE, 0)
    pid = _spawn_forker({"ctl": ctl_r, "status": st_w, "inp": in_r, "result": res_w,
                         "err": err_w, "told": told_w})
    for fd in (ctl_r, st_w, res_w, err_w, told_w):
        os.close(fd)
    # Not in_r: its open file is shared with the children, who read it blocking.
    for fd in (in_w, res_r, err_r):
        _nonblocking(fd)
    blob = carry.encode(msg)
    try:
        forker._write_all(ctl_w, _HEADER.pack(len(blob)) + blob)
    except BrokenPipeError:
        pass  # the forker ended already: said below, with what it wrote to stderr
    told, setup_err = _hear_setup(told_r, err_r)
    if told != b"\0":
        os.waitpid(pid, 0)
        kind, _, rest = told.decode("utf-8", "replace").partition("\0")
        message, _, text = rest.partition("\0")
        _close_all((ctl_w, st_r, in_r, in_w, res_r, err_r))
        if not told:  # the forker's interpreter ended before setup could run
            message = "the fork server's forker ended before setup ran"
            text = setup_err.decode("utf-8", "replace")
        raise PluginError(kind or "SetupError", f"setup failed: {message}", text)
    _state.update(pid=pid, ctl=ctl_w, status=st_r, in_r=in_r, in_w=in_w, res=res_r, err=err_r,
                  cap=int(msg["result_cap"]))
    return {"pid": pid, "stderr": setup_err}


def _hear_setup(told: int, err: int) -> tuple[bytes, bytes]:
    """The forker's word on setup (up to its end of ``told``), and what setup wrote to
    stderr meanwhile, read as it comes so that setup never waits on a full pipe."""
    got, said = b"", b""
    poller = select.poll()
    poller.register(told, select.POLLIN)
    poller.register(err, select.POLLIN)
    open_ = True
    while open_:
        for fd, _ev in poller.poll():
            if fd == err:
                said = (said + _drain(err, _STDERR_TAIL))[-_STDERR_TAIL:]
                continue
            chunk = os.read(told, 65536)
            if not chunk:
                open_ = False
            got = (got + chunk)[:_SETUP_REPLY_CAP]
    os.close(told)
    return got, (said + _drain(err, _STDERR_TAIL))[-_STDERR_TAIL:]


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


class _Exchange:
    """One input's traffic: its bytes out to the child, result, stderr and status in."""

    def __init__(self, st: dict, data: bytes) -> None:
        self.st = st
        self.out = memoryview(_HEADER.pack(len(data)) + data)
        self.result = bytearray()
        self.over = False
        self.err = b""
        self.status = b""

    def read_result(self) -> None:
        while True:
            try:
                chunk = os.read(self.st["res"], 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            if len(self.result) + len(chunk) > self.st["cap"] + 4:
                self.over = True
            elif not self.over:
                self.result += chunk

    def run(self) -> list:
        st = self.st
        poller = select.poll()
        poller.register(st["in_w"], select.POLLOUT)
        for fd in (st["res"], st["err"], st["status"]):
            poller.register(fd, select.POLLIN)
        # The input first, as much as the pipe takes (all of it, mostly): no child is alive and
        # the pipe is empty, and the child finds it there instead of waiting for this process.
        self._send(poller)
        forker._write_all(st["ctl"], b"g")
        while len(self.status) < forker.STATUS.size:
            for fd, _ev in poller.poll():
                if fd == st["in_w"]:
                    self._send(poller)
                elif fd == st["res"]:
                    self.read_result()
                elif fd == st["err"]:
                    self.err = (self.err + _drain(fd, _STDERR_TAIL))[-_STDERR_TAIL:]
                else:
                    self._read_status()
        # Every writer is gone: what is left in the pipes is this input's, or unread input.
        self.read_result()
        self.err = (self.err + _drain(st["err"], _STDERR_TAIL))[-_STDERR_TAIL:]
        while select.select([st["in_r"]], [], [], 0)[0]:  # input its child left unread
            os.read(st["in_r"], 65536)
        return self._record()

    def _send(self, poller: select.poll) -> None:
        try:
            n = os.write(self.st["in_w"], self.out)
        except BlockingIOError:
            return
        except BrokenPipeError:
            n = len(self.out)
        self.out = self.out[n:]
        if not self.out:
            poller.unregister(self.st["in_w"])

    def _read_status(self) -> None:
        chunk = os.read(self.st["status"], forker.STATUS.size - len(self.status))
        if not chunk:
            raise ProtocolError("the fork server's forker ended; start a new ForkServer")
        self.status += chunk

    def _record(self) -> list:
        kind, status, timed_out, rss, cpu_us, duration = forker.STATUS.unpack(self.status)
        result: bytes | None = None
        if self.over:
            result = forker.carry.encode({"big": len(self.result)})
        elif len(self.result) >= 4:
            size = _HEADER.unpack_from(self.result)[0]
            if len(self.result) == size + 4:
                result = bytes(self.result[4:])
        return [kind, status, bool(timed_out), rss, cpu_us, duration, result, self.err]


def _run(msg: dict) -> list:
    if not _state:
        raise ProtocolError("run before setup")
    inputs = msg.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, bytes) for i in inputs):
        raise ProtocolError("run needs 'inputs', a list of bytes")
    return [_Exchange(_state, data).run() for data in inputs]


def handle(action: str, payload: Any) -> Any:
    if not isinstance(payload, dict):
        raise ProtocolError(f"fork server action {action!r} needs a map")
    if action == "setup":
        return _setup(payload)
    if action == "run":
        return _run(payload)
    raise ProtocolError(f"unknown fork server action {action!r}; actions are setup and run")

