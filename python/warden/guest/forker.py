"""The forker: the process of a fork server that runs setup once and then forks one child per
input, inside the sandbox.

After setup, the shared writable mappings setup left are made private copies
(warden.guest.privatize), so that no input's writes reach another through them.

It never sees an input or a result: the collector (warden.guest.forkserver) writes each input
to a pipe that only the child reads, and the child writes its result to a pipe that only the
collector reads. So every child starts from the forker as setup left it, with nothing of any
other input in its memory. Per input the forker:

1. waits for the collector's go (a byte on ``ctl``), forks the child;
2. waits for the child's end, killing it at the wall deadline;
3. kills whatever the child left running (the forker is a child subreaper, so every orphan
   of the input becomes its child, and anything it still sees is the input's);
4. puts /tmp and /workspace back (warden.guest.scratch);
5. reports the child's wait status, rusage and timing on ``status``.

The child, before the target runs: its own process group; descriptors 0 (its input), 1
(/dev/null), 2 (stderr, where faulthandler reports a fatal signal with the Python stack) and 3
(its result), no other; RLIMIT_AS and RLIMIT_CPU for the input's limits; the child filter of
warden.guest.childguard (installed once on the forker, inherited); killed if the forker dies.
Results are written with warden.guest.carry.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import resource
import select
import signal
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from warden.guest import carry
from warden.guest.childguard import Guard, prctl
from warden.guest.privatize import privatize_shared
from warden.guest.scratch import Areas

__all__ = ["BOOT", "FORKER_FDS", "STATUS", "TOLD_FD", "Fds", "Limits", "main", "serve"]

# kind, wait status, timed out, peak rss (KiB), user + system cpu (us), duration (ns)
STATUS = struct.Struct("<iiiqqq")
KIND_DONE, KIND_FORK_FAILED = 0, 1
_HEADER = struct.Struct("<I")
_OK_MAP = b"\x81\xa1v"
# A plain int: an enum member through ctypes touches more pages of a child.
_SIGKILL = int(signal.SIGKILL)
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 1, 4, 36
# What an input may allocate beyond its limit to report a MemoryError.
REPORT_RESERVE = 16 << 20
MAX_FRAMES = 16


class Fds:
    """The forker's ends of the fork server's pipes."""

    def __init__(self, ctl: int, status: int, inp: int, result: int, err: int) -> None:
        self.ctl, self.status, self.inp, self.result, self.err = ctl, status, inp, result, err


class Limits:
    def __init__(self, wall_s: float, cpu_s: int | None, memory_bytes: int | None,
                 result_cap: int) -> None:
        self.wall_s, self.cpu_s, self.memory_bytes = wall_s, cpu_s, memory_bytes
        self.result_cap = result_cap


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("the input ended early")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _type_name(exc: BaseException) -> str:
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _exception(exc: BaseException, memory: bool) -> dict:
    import traceback  # in the child, only when an input raised: the forker stays small

    tb = exc.__traceback__
    own = _run_target.__code__.co_filename
    while tb is not None and tb.tb_frame.f_code.co_filename == own:
        tb = tb.tb_next  # the target's frames, not the fork server's call of it
    frames = traceback.extract_tb(tb)[-MAX_FRAMES:]
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        message = str(exc)
    except Exception:
        message = f"<str() of the {type(exc).__name__} failed>"
    return {"e": [_type_name(exc), message[:8192], text[-65536:],
                  [[f.filename, f.lineno or 0, f.name] for f in frames]], "m": memory}


def _run_target(entry: Callable[[Any], Any], value: Any) -> Any:
    result = entry(value)
    if hasattr(result, "__await__") or type(result).__name__ == "generator":
        import asyncio  # in the child, only for a coroutine: the forker stays small
        import inspect

        if inspect.isawaitable(result):
            result = asyncio.run(result)  # type: ignore[arg-type]
    return result


def _child(entry: Callable[[Any], Any], fds: Fds, null: int, lim: Limits, guard: Guard,
           as_base: int) -> None:
    """Runs one input; never returns."""
    try:
        os.setpgid(0, 0)
        os.dup2(fds.inp, 0)
        os.dup2(null, 1)
        os.dup2(fds.err, 2)
        os.dup2(fds.result, 3)
        os.closerange(4, 1 << 20)
        if lim.memory_bytes is not None:
            soft = as_base + lim.memory_bytes
            resource.setrlimit(resource.RLIMIT_AS, (soft, soft + REPORT_RESERVE))
        if lim.cpu_s is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (lim.cpu_s, lim.cpu_s + 1))
        guard.prctl(_PR_SET_PDEATHSIG, _SIGKILL)
        guard.prctl(_PR_SET_DUMPABLE, 1)  # its own /proc entries readable by itself again
        value = carry.decode(_read_exact(0, _HEADER.unpack(_read_exact(0, 4))[0]))
    except BaseException as exc:
        os.write(2, f"warden fork server: preparing the input failed: {exc!r}\n".encode())
        os._exit(71)
    msg: dict | None = None
    try:
        result = _run_target(entry, value)
    except MemoryError as exc:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))  # room to report it
        msg = _exception(exc, True)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the input's too
        msg = _exception(exc, False)
    del value
    try:
        # {"v": result} as msgpack: a map of one, the key "v", then the result.
        blob = carry.encode(msg, "result") if msg else _OK_MAP + carry.encode(result, "result")
    except Exception as exc:
        blob = carry.encode(_exception(TypeError(
            f"the target's result cannot be carried back: {exc}"), False))
    if len(blob) > lim.result_cap:
        blob = carry.encode({"big": len(blob)})
    _write_all(3, _HEADER.pack(len(blob)) + blob)
    os._exit(0)


def _kill_rest(me: int, collector: int) -> None:
    """Kill every process the input left: with the forker a child subreaper, each is (or will
    be, once its parent dies) the forker's child; any process of the sandbox's pid namespace
    that is not init, the collector or the forker is the input's."""
    try:
        if os.waitpid(-1, os.WNOHANG) == (0, 0):
            pass
    except ChildProcessError:
        return  # nothing left: the common case, one system call
    keep = {1, me, collector}
    while True:
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in keep:
                try:
                    os.kill(int(name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        time.sleep(0.001)


def _one(entry: Callable[[Any], Any], fds: Fds, null: int, lim: Limits, guard: Guard,
         as_base: int, me: int, collector: int, areas: Areas) -> bytes:
    t0 = time.monotonic_ns()
    try:
        pid = os.fork()
    except OSError as exc:
        return STATUS.pack(KIND_FORK_FAILED, exc.errno or 0, 0, 0, 0, 0)
    if pid == 0:
        _child(entry, fds, null, lim, guard, as_base)
    timed_out = 0
    pidfd = os.pidfd_open(pid)
    try:
        if not select.select([pidfd], [], [], lim.wall_s)[0]:
            os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid is still the child's
            timed_out = 1
    finally:
        os.close(pidfd)
    _, status, ru = os.wait4(pid, 0)
    duration = time.monotonic_ns() - t0
    _kill_rest(me, collector)
    areas.restore()
    cpu_us = int((ru.ru_utime + ru.ru_stime) * 1e6)
    return STATUS.pack(KIND_DONE, status, timed_out, ru.ru_maxrss, cpu_us, duration)


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def serve(entry: Callable[[Any], Any], fds: Fds, lim: Limits, collector: int,
          areas: Areas) -> None:
    """The forker's loop, after setup; never returns."""
    me = os.getpid()
    guard = Guard((me, collector), tuple({os.getpgid(0), os.getpgid(collector)}))
    guard.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    null = os.open("/dev/null", os.O_RDWR)
    faulthandler.enable(file=2, all_threads=True)
    sys.stdout.flush()
    # Objects setup made are never moved again by the collector: a child that collects
    # garbage does not copy their pages.
    gc.collect()
    gc.freeze()
    as_base = _vm_size()
    # The child filter, on the forker itself: every child inherits it, at no cost per input.
    # The forker needs none of what it refuses (it kills only its children and what they left).
    guard.install()
    while True:
        go = os.read(fds.ctl, 1)
        if go != b"g":
            os._exit(0)
        _write_all(fds.status, _one(entry, fds, null, lim, guard, as_base, me, collector, areas))


# The forker is a fresh interpreter (a small process forks faster and its children copy
# fewer pages), started by warden.guest.forkserver with its pipes at these descriptors.
FORKER_FDS = Fds(3, 4, 5, 6, 2)
TOLD_FD = 7
BOOT = ("import sys; sys.path[:] = sys.argv[1:]; del sys.argv[1:]; "
        "from warden.guest.forker import main; main()")
_SETUP_REPLY_CAP = 1 << 20


def _load(msg: dict) -> Callable[[Any], Any]:
    """Run setup, return the entry function."""
    import linecache

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


def main() -> None:
    """The forker's program: read setup's message on ``ctl``, run setup, say so on
    ``TOLD_FD`` (one zero byte, or the exception), then serve. Never returns."""
    fds = FORKER_FDS
    try:
        # Non-dumpable (exec made it dumpable again): a child, same user but without
        # capabilities, cannot open this process's /proc/<pid>/mem.
        prctl(_PR_SET_DUMPABLE, 0)
        os.closerange(TOLD_FD + 1, 1 << 20)
        msg = carry.decode(_read_exact(fds.ctl, _HEADER.unpack(_read_exact(fds.ctl, 4))[0]))
        entry = _load(msg)
        privatize_shared()
        areas = Areas()
        lim = Limits(float(msg["wall_s"]), msg.get("cpu_s"), msg.get("memory_bytes"),
                     int(msg["result_cap"]))
        os.write(TOLD_FD, b"\0")
        os.close(TOLD_FD)
    except BaseException as exc:
        import traceback

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        report = f"{type(exc).__name__}\0{exc}\0{text}".encode("utf-8", "backslashreplace")
        _write_all(TOLD_FD, report[:_SETUP_REPLY_CAP])
        os._exit(0)
    serve(entry, fds, lim, os.getppid(), areas)
