"""warden.Process: a background process in a Sandbox, started by ``Sandbox.spawn``.

The process lives in the sandbox's worker's table (warden.guest.procs), which keeps its output
in a ring buffer until read; a Process here is only a reader with an offset into it, so any
number of them (``Sandbox.attach`` from another thread or another handle of the same sandbox)
each see all of the output that is still kept. Every method is one short request to the
worker; a read waits at most POLL_S there, and the host sleeps between reads that found
nothing, so that other requests to the sandbox get their turn however many processes are
read at once.
"""

from __future__ import annotations

import collections
import signal as signals
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from warden.errors import InvalidArgument, ProcessNotFound, ProcessStdinClosed, TimeoutExceeded
from warden.sandboxes import checks
from warden.spec.result import ExecResult, exec_output_cap
from warden.spec.verdict import Ending, judge
from warden.wire import ops
from warden.wire.procs import ProcExit, ProcInfo, ProcRead, gone, parse_read, parse_written
from warden.wire.streams import STREAM_CHUNK

if TYPE_CHECKING:
    from warden.sandboxes.sandbox import Sandbox

__all__ = ["BACKOFF_S", "POLL_S", "Collected", "Process", "ProcessInfo"]

ProcessInfo = ProcInfo
_T = TypeVar("_T")
# How long one read waits in the worker for output, and the longest the host sleeps
# between reads that found none.
POLL_S = 0.05
BACKOFF_S = 0.1
# The most one read brings back.
_READ_MAX = 1 << 20
# The backstop deadline of one request: past it the sandbox is killed as unresponsive.
_REQUEST_S = 60.0


class Collected:
    """A command's output as an ExecResult keeps it: each stream up to ``keep`` bytes, the
    rest counted as dropped."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.out = {"stdout": bytearray(), "stderr": bytearray()}
        self.dropped = {"stdout": 0, "stderr": 0}

    def add(self, stream: str, data: bytes) -> None:
        room = max(0, self.keep - len(self.out[stream]))
        self.out[stream] += data[:room]
        self.dropped[stream] += max(0, len(data) - room)

    def result(self, end: ProcExit | None, took: float, timed_out: bool = False) -> ExecResult:
        """The ExecResult of a process that ended as ``end`` (None: killed at its deadline)."""
        sig = signals.SIGKILL if end is None else end.signal
        reason, hit = judge(Ending(signal=sig, timed_out=timed_out))
        out, err = self.out, self.dropped
        return ExecResult(None if end is None else end.exit_code, sig, bytes(out["stdout"]),
                          bytes(out["stderr"]), reason, hit, took, 0, err["stdout"] > 0,
                          err["stderr"] > 0, err["stdout"], err["stderr"], "none",
                          0.0 if end is None else end.cpu_user_s,
                          0.0 if end is None else end.cpu_system_s,
                          len(out["stdout"]) + err["stdout"], len(out["stderr"]) + err["stderr"])


class Process:
    """A process started with ``Sandbox.spawn`` (or found again with ``Sandbox.attach``).

    ``pid`` is its pid inside the sandbox. Output is read as ``(stream, bytes)`` chunks,
    ``stream`` "stdout" or "stderr", in the order the sandbox read them; what ``poll`` reads
    on the way is kept for ``output``/``wait`` (at most the sandbox's exec output cap; older
    chunks beyond it are counted in ``lost_bytes``, as are chunks the sandbox's ring buffer
    dropped before they were read). Thread-safe."""

    def __init__(self, box: Sandbox, pid: int, argv: list[str], started: float | None) -> None:
        self._box = box
        self.pid = pid
        self.argv = argv
        self.started = started
        self._lock = threading.RLock()
        self._offset = 0
        self._exit: ProcExit | None = None
        self._unread: collections.deque[tuple[str, bytes]] = collections.deque()
        self._unread_bytes = 0
        self._keep = exec_output_cap(box.spec.limits.memory_mb, None)
        self.lost_bytes = 0
        self._t0 = time.monotonic()

    def __repr__(self) -> str:
        return f"<warden.{type(self).__name__} pid={self.pid} argv={self.argv!r} returncode={self.returncode}>"

    @property
    def returncode(self) -> int | None:
        """Popen's convention: the exit code, -N for a signal N, None while it runs (as far as
        reads so far have seen)."""
        end = self._exit
        if end is None:
            return None
        return end.exit_code if end.exit_code is not None else -(end.signal or 0)

    def _tool(self, op: str, args: dict, parse: Callable[[object], _T],
              timeout: float = _REQUEST_S) -> _T:
        box = self._box
        return box._provider.tool_call(box._handle, op, {"pid": self.pid, **args},
                                       parse, timeout=timeout)

    def _fetch(self, wait: float) -> list[tuple[str, bytes]]:
        """One read from the offset, waiting up to ``wait`` seconds for output or the exit."""
        offset = self._offset

        def parse(value: object) -> ProcRead | None:
            return None if gone(value) else parse_read(value, offset, _READ_MAX)

        got = self._tool(ops.PROC_READ, {"offset": offset, "wait": wait, "max": _READ_MAX},
                         parse, timeout=wait + _REQUEST_S)
        if got is None:
            raise ProcessNotFound(self.pid, self._box.id)
        self._offset = got.next
        self.lost_bytes += got.lost
        if got.exit is not None:
            self._exit = got.exit
        return got.chunks

    def _keep_unread(self, chunks: list[tuple[str, bytes]]) -> None:
        for chunk in chunks:
            self._unread.append(chunk)
            self._unread_bytes += len(chunk[1])
        while self._unread_bytes > self._keep and self._unread:
            _, old = self._unread.popleft()
            self._unread_bytes -= len(old)
            self.lost_bytes += len(old)

    def poll(self) -> int | None:
        """``returncode`` after a read that does not wait (its output is kept for later)."""
        with self._lock:
            if self._exit is None:
                self._keep_unread(self._fetch(0.0))
            return self.returncode

    def _step(self, deadline: float | None) -> list[tuple[str, bytes]] | None:
        """The chunks not given yet (none when nothing came within POLL_S), or None once
        the process has ended and all of its output was given."""
        with self._lock:
            if self._unread:
                chunks = list(self._unread)
                self._unread.clear()
                self._unread_bytes = 0
                return chunks
            if self._exit is not None:
                return None
            left = POLL_S if deadline is None else deadline - time.monotonic()
            return self._fetch(max(0.0, min(POLL_S, left)))

    def _chunks(self, deadline: float | None) -> Iterator[list[tuple[str, bytes]]]:
        """Rounds of chunks until the end; an empty round when ``deadline`` has passed.
        Between empty rounds the host sleeps (up to BACKOFF_S), not the worker, so that an
        idle process costs its sandbox's other requests almost nothing."""
        pause = 0.005
        while True:
            chunks = self._step(deadline)
            if chunks is None:
                return
            if chunks:
                pause = 0.005
                yield chunks
                continue
            if deadline is not None and time.monotonic() >= deadline:
                yield []
                continue
            time.sleep(pause if deadline is None else
                       max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(BACKOFF_S, pause * 2)

    def output(self, timeout: float | None = None) -> Iterator[tuple[str, bytes]]:
        """``(stream, bytes)`` chunks as the process prints them, until it has ended and all
        of its output was given. ``timeout`` (seconds for the whole iteration, None: no
        limit) passing raises TimeoutExceeded; the process runs on."""
        limit = checks.timeout_s(timeout) if timeout is not None else None
        deadline = None if limit is None else time.monotonic() + limit
        for chunks in self._chunks(deadline):
            if not chunks:
                raise TimeoutExceeded(f"process {self.pid} in sandbox {self._box.id} did not "
                                      f"end within {limit:g}s; it runs on")
            yield from chunks

    def wait(self, timeout: float | None = None) -> ExecResult:
        """Wait for the process to end: its exit and the output not yet read through
        ``output`` (each stream at most the sandbox's exec output cap, the rest counted as
        dropped). TimeoutExceeded when ``timeout`` seconds pass first; it runs on."""
        kept = Collected(self._keep)
        for stream, data in self.output(timeout):
            kept.add(stream, data)
        return kept.result(self._exit, time.monotonic() - self._t0)

    def write(self, data: bytes | str) -> None:
        """Write ``data`` to the process's stdin, waiting while it does not read.
        ProcessStdinClosed when its stdin is closed (or it ended)."""
        view = memoryview(checks.stdin_bytes(data) or b"")
        while view:
            piece = bytes(view[:STREAM_CHUNK])

            def parse(value: object, n: int = len(piece)) -> int | None:
                return -1 if gone(value) else parse_written(value, n)

            written = self._tool(ops.PROC_WRITE, {"data": piece}, parse)
            if written == -1:
                raise ProcessNotFound(self.pid, self._box.id)
            if written is None:
                raise ProcessStdinClosed(self.pid, self._box.id)
            view = view[written:]

    def close_stdin(self) -> None:
        """Close the process's stdin: it reads end of file."""
        self._simple(ops.PROC_CLOSE_STDIN, {})

    def kill(self, signal: int = signals.SIGKILL) -> None:
        """Send ``signal`` to the process and what it started (its process group); nothing
        once it has ended."""
        sig = int(signal)
        if not 0 < sig < 65:
            raise InvalidArgument("signal", signal, "a signal number, e.g. signal.SIGTERM")
        self._simple(ops.PROC_SIGNAL, {"signal": sig})

    def terminate(self) -> None:
        self.kill(signals.SIGTERM)

    def _simple(self, op: str, args: dict) -> None:
        def parse(value: object) -> bool:
            return gone(value)

        if self._tool(op, args, parse):
            raise ProcessNotFound(self.pid, self._box.id)
