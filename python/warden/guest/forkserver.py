"""A fork server inside a sandbox: the worker's entry (``handle(action, payload)``) for
warden.ForkServer.

The worker that loads this entry becomes the *collector*: it holds the channel to the host and
never runs setup or any input. On ``setup`` it forks the *forker* (warden.guest.forker), which
runs setup and then forks one child per input. On ``run`` it feeds each input to its child
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

import ctypes
import fcntl
import linecache
import os
import select
import sys
import traceback
from typing import Any

from warden.errors import PluginError, ProtocolError
from warden.guest import forker
from warden.guest.scratch import Areas

__all__ = ["handle"]

_HEADER = forker._HEADER
_STDERR_TAIL = 16 << 10
_SETUP_REPLY_CAP = 1 << 20
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


def _load(msg: dict) -> Any:
    """In the forker: run setup, return the entry function."""
    source, filename, name = msg["source"], msg["filename"], msg["entry"]
    for d in reversed(msg.get("path") or []):
        sys.path.insert(0, d)
    # Tracebacks of setup's code show its lines although the file is not in the sandbox.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = type(sys)("__warden_setup__")
    module.__file__ = filename
    sys.modules["__warden_setup__"] = module
    exec(compile(source, filename, "exec"), module.__dict__)  # nosec B102 - the sandbox's code
    entry = module.__dict__.get(name)
    if not callable(entry):
        raise NameError(f"setup defines no callable {name!r}; define it, or pass entry= the "
                        "name of the function to call per input")
    return entry


def _forker_main(msg: dict, fds: forker.Fds, collector: int, told: int) -> None:
    """The forked forker: setup, then its loop. Never returns."""
    try:
        entry = _load(msg)
        areas = Areas()
        lim = forker.Limits(float(msg["wall_s"]), msg.get("cpu_s"), msg.get("memory_bytes"),
                            int(msg["result_cap"]))
        os.write(told, b"\0")
        os.close(told)
    except BaseException as exc:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        report = f"{type(exc).__name__}\0{exc}\0{text}".encode("utf-8", "backslashreplace")
        forker._write_all(told, report[:_SETUP_REPLY_CAP])
        os._exit(0)
    forker.serve(entry, fds, lim, collector, areas)


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
    # /proc/<pid>/mem; the forker inherits it.
    _prctl(_PR_SET_DUMPABLE, 0)
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        keep = {ctl_r, st_w, in_r, res_w, err_w, told_w}
        os.dup2(err_w, 2)
        for fd in range(3, max(keep) + 64):
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.closerange(max(keep) + 64, 1 << 20)
        _forker_main(msg, forker.Fds(ctl_r, st_w, in_r, res_w, err_w), me, told_w)
    for fd in (ctl_r, st_w, res_w, err_w, told_w):
        os.close(fd)
    # Not in_r: its open file is shared with the children, who read it blocking.
    for fd in (in_w, res_r, err_r):
        _nonblocking(fd)
    told, setup_err = _hear_setup(told_r, err_r)
    if told != b"\0":
        os.waitpid(pid, 0)
        kind, _, rest = told.decode("utf-8", "replace").partition("\0")
        message, _, text = rest.partition("\0")
        _close_all((ctl_w, st_r, in_r, in_w, res_r, err_r))
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


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


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

