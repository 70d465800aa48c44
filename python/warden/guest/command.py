"""One command of ``Sandbox.exec``, run until its own process exits, with bounded output.

Output
    stdout and stderr are read as they come, each into a buffer of at most its cap; what comes
    past the cap is read, counted and thrown away, so that a command printing without end
    neither blocks on a full pipe nor grows the worker's memory (the worker shares the
    sandbox's memory limit with the command).

The end
    The command is over when its own process exits, not when its pipes close: a background
    process it started (``sleep 100 &``, a daemon) may hold them open for as long as it lives.
    At the exit, what is already in the pipes is read (FIONREAD says how much: everything the
    command wrote before it exited is there), and the worker's ends are closed. A background
    process lives on in the sandbox; what it writes to those pipes later fails with EPIPE (or
    kills it with SIGPIPE, unless it redirected its output).

The deadline
    The command runs in a session of its own; at its deadline the whole process group is
    killed with SIGKILL (a background process that left the group is not).

Imports only the standard library: it runs in every sandbox, under the image's Python in a
container.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

__all__ = ["Finished", "run"]

_CHUNK = 1 << 16
# Reads of one stream per wake-up, so that a fast writer cannot keep the loop from noticing
# the command's exit or its deadline.
_READS_PER_WAKE = 16
# How often the exit is polled when the kernel gives no pidfd (pidfd_open, Linux 5.3).
_POLL_S = 0.05


@dataclass
class _Stream:
    """One output pipe: its first ``cap`` bytes kept, the rest counted."""

    file: IO[bytes]  # the Popen pipe that owns the descriptor
    fd: int
    cap: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    open: bool = True
    # Streaming: each chunk read also goes to ``on_chunk(name, chunk)``, until
    # ``stream_left`` bytes went that way.
    name: str = ""
    on_chunk: Callable[[str, bytes], None] | None = None
    stream_left: int = 0

    def take(self, chunk: bytes) -> None:
        if self.on_chunk is not None and self.stream_left > 0:
            piece = chunk[:self.stream_left]
            self.stream_left -= len(piece)
            self.on_chunk(self.name, piece)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def pump(self, budget: int | None) -> None:
        """Read what is there (at most ``budget`` bytes when given); closes at end of file."""
        reads = 0
        while self.open and (budget is None or budget > 0):
            want = _CHUNK if budget is None else min(_CHUNK, budget)
            try:
                chunk = os.read(self.fd, want)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""  # a pipe error is its end
            if not chunk:
                self.close()
                return
            self.take(chunk)
            if budget is not None:
                budget -= len(chunk)
            reads += 1
            if budget is None and reads >= _READS_PER_WAKE:
                return

    def drain_and_close(self) -> None:
        """At the command's exit: read exactly what the pipe holds now, then let go of it."""
        if not self.open:
            return
        try:
            waiting = struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0" * 4))[0]
        except OSError:
            waiting = 0
        self.pump(waiting)
        self.close()

    def close(self) -> None:
        if self.open:
            self.open = False
            self.file.close()


@dataclass
class Finished:
    """How the command ended and what it printed."""

    wait_status: int
    timed_out: bool
    stdout: bytearray
    stderr: bytearray
    stdout_dropped: int
    stderr_dropped: int
    max_rss_bytes: int   # the largest resident set among the command and its waited children
    cpu_user_s: float = 0.0    # user and system CPU of the command and its waited children
    cpu_system_s: float = 0.0


def run(argv: list[str], *, stdin: bytes | None, cwd: str, env: dict | None,
        timeout: float | None, cap: int, on_chunk: Callable[[str, bytes], None] | None = None,
        stream_cap: int = 0) -> Finished:
    """Run ``argv`` until its process exits (or its deadline); OSError when it cannot start
    (Popen's, with ``filename`` set when the command itself could not be executed). With
    ``on_chunk``, every chunk read is also passed to it as it comes, up to ``stream_cap``
    bytes of each stream."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out = _Stream(proc.stdout, proc.stdout.fileno(), cap, name="stdout", on_chunk=on_chunk,
                  stream_left=stream_cap)
    err = _Stream(proc.stderr, proc.stderr.fileno(), cap, name="stderr", on_chunk=on_chunk,
                  stream_left=stream_cap)
    for s in (out, err):
        os.set_blocking(s.fd, False)
    feed = _Feed(proc.stdin, stdin or b"")
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        status, rss, timed_out, cpu = _wait(proc, pidfd, out, err, feed, deadline)
    finally:
        if pidfd is not None:
            os.close(pidfd)
        if proc.returncode is None:  # the wait itself failed: leave no command behind
            _kill_group(proc.pid)
            _reap(proc, block=True)
        feed.close()
        for s in (out, err):
            s.drain_and_close()
    return Finished(status, timed_out, out.data, err.data, out.dropped, err.dropped, rss, *cpu)


class _Feed:
    """The command's stdin: written as it reads, closed when all is written or it stops
    reading."""

    def __init__(self, file: IO[bytes], data: bytes) -> None:
        self.file, self.view = file, memoryview(data)
        self.fd = file.fileno()
        self.open = True
        if not data:
            self.close()
        else:
            os.set_blocking(self.fd, False)

    def write(self) -> None:
        try:
            n = os.write(self.fd, self.view[:_CHUNK])
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the command will read no more
            n = len(self.view)
        self.view = self.view[n:]
        if not self.view:
            self.close()

    def close(self) -> None:
        if self.open:
            self.open = False
            try:
                self.file.close()
            except OSError:
                pass  # a flush of nothing buffered: the descriptor is closed either way


def _wait(proc: subprocess.Popen, pidfd: int | None, out: _Stream, err: _Stream, feed: _Feed,
          deadline: float | None) -> tuple[int, int, bool, tuple[float, float]]:
    """Pump the pipes until the command exits: (its wait status, its max RSS in bytes,
    whether the deadline killed it, its user and system CPU seconds)."""
    poller = select.poll()
    for s in (out, err):
        poller.register(s.fd, select.POLLIN)
    if feed.open:
        poller.register(feed.fd, select.POLLOUT)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    while True:
        ended = _reap(proc, block=False)
        if ended is not None:
            return ended[0], ended[1], False, ended[2]
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            _kill_group(proc.pid)
            ended = _reap(proc, block=True)
            assert ended is not None
            return ended[0], ended[1], True, ended[2]
        wait_s = _POLL_S if pidfd is None else left
        if wait_s is not None and left is not None:
            wait_s = min(wait_s, left)
        for fd, _ev in poller.poll(None if wait_s is None else max(1, int(wait_s * 1000))):
            if fd == feed.fd and feed.open:
                feed.write()
                if not feed.open:
                    poller.unregister(fd)
            for s in (out, err):
                if fd == s.fd and s.open:
                    s.pump(None)
                    if not s.open:
                        poller.unregister(fd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is gone already; the wait that follows reaps the command


def _reap(proc: subprocess.Popen, *, block: bool
          ) -> tuple[int, int, tuple[float, float]] | None:
    """(wait status, max RSS in bytes, (user, system) CPU seconds) once the command has
    exited; None while it runs."""
    pid, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    return status, usage.ru_maxrss * 1024, (usage.ru_utime, usage.ru_stime)
