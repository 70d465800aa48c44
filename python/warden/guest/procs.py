"""Background processes of a sandbox (``Sandbox.spawn``): a table in the worker, and their
output kept in bounded ring buffers until the host reads it.

Each process runs in a session of its own (its group is its pid, so a signal reaches what it
started). One thread, the *pump*, waits on every process's pipes and pidfd at once: it reads
output as it is produced into the process's ring (at most RING_BYTES; past that the oldest
chunks go, and a reader that had not read them is told how many bytes it lost), and reaps a
process when it exits, reading what its pipes still hold (FIONREAD) and letting go of them,
as warden.guest.command does. The worker's loop meanwhile serves other requests.

Readers name a byte offset into a process's output (both streams, in the order they were
read), so that any number of readers (another thread, another handle of the same sandbox)
each read all of it without taking it from the others. The table keeps the newest
KEEP_EXITED exited processes so that a late ``wait`` still finds its status.

Imports only the standard library and wire: it runs in every sandbox.
"""

from __future__ import annotations

import collections
import fcntl
import os
import select
import signal as signals
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from warden.wire.streams import STREAM_CHUNK

__all__ = ["KEEP_EXITED", "RING_BYTES", "Proc", "Table", "resize", "table"]

RING_BYTES = 1 << 20
KEEP_EXITED = 256
# What the rings of exited processes, not yet forgotten, may hold together.
EXITED_BYTES = 16 << 20


@dataclass
class Proc:
    """One process and what it printed; its fields are guarded by the table's lock."""

    popen: subprocess.Popen
    argv: list[str]
    started: float
    pidfd: int
    pipes: dict[int, tuple[str, IO[bytes]]]  # open output descriptors -> (stream, pipe)
    ring: collections.deque = field(default_factory=collections.deque)  # (offset, name, data)
    ring_bytes: int = 0
    end: int = 0                             # offset after the last byte read
    feed: IO[bytes] | None = None            # where writes go: its stdin pipe or pty
    tty: int = -1                            # the pty's master (read end), or -1
    status: int | None = None                # the wait status once reaped
    cpu: tuple[float, float] = (0.0, 0.0)    # user and system seconds once reaped

    @property
    def pid(self) -> int:
        return self.popen.pid

    def take(self, name: str, data: bytes) -> None:
        self.ring.append((self.end, name, data))
        self.end += len(data)
        self.ring_bytes += len(data)
        while self.ring_bytes > RING_BYTES:
            _, _, old = self.ring.popleft()
            self.ring_bytes -= len(old)

    def read(self, offset: int, most: int) -> tuple[list[list], int, int]:
        """Chunks from ``offset`` (at most ``most`` bytes, at least one chunk): (chunks as
        [name, data], the offset after them, bytes lost before the first)."""
        first = self.ring[0][0] if self.ring else self.end
        lost = max(0, first - offset)
        out: list[list] = []
        size = 0
        at = max(offset, first)
        for start, name, data in self.ring:
            if start < at:
                continue
            if out and size + len(data) > most:
                break
            out.append([name, data])
            size += len(data)
            at = start + len(data)
        return out, at, lost


class Table:
    """The worker's processes, and the pump thread that serves them."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.procs: dict[int, Proc] = {}
        self.exited: collections.deque[Proc] = collections.deque()
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None

    def start(self, argv: list[str], *, env: dict | None, cwd: str, stdin: bool,
              tty: tuple[int, int] | None = None) -> Proc:
        """Start ``argv`` in a session of its own: with pipes, or with ``tty`` (columns, rows)
        on a new pseudo-terminal that becomes its controlling terminal."""
        feed: IO[bytes] | None
        if tty is not None:
            popen, pipes, feed = _start_on_pty(argv, env=env, cwd=cwd, size=tty)
        else:
            popen = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                     env=env, start_new_session=True)
            assert popen.stdout is not None and popen.stderr is not None
            pipes = {popen.stdout.fileno(): ("stdout", popen.stdout),
                     popen.stderr.fileno(): ("stderr", popen.stderr)}
            feed = popen.stdin
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:
            os.killpg(popen.pid, signals.SIGKILL)
            popen.wait()
            raise
        for fd in pipes:
            os.set_blocking(fd, False)
        if feed is not None:
            os.set_blocking(feed.fileno(), False)
        proc = Proc(popen, list(argv), time.time(), pidfd, pipes, feed=feed,
                    tty=next(iter(pipes)) if tty is not None else -1)
        with self.lock:
            self.procs[proc.pid] = proc
            self._ensure_pump()
        os.write(self._wake_w, b"x")
        return proc

    def get(self, pid: object) -> Proc:
        with self.lock:
            proc = self.procs.get(pid) if type(pid) is int else None
        if proc is None:
            raise ProcessLookupError(f"no process {pid!r} was started through warden in this "
                                     "sandbox, or it ended long ago")
        return proc

    def wait_for(self, proc: Proc, offset: int, wait: float) -> None:
        """Until ``proc`` has output past ``offset``, has ended, or ``wait`` seconds passed."""
        deadline = time.monotonic() + wait
        with self.lock:
            while proc.end <= offset and proc.status is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.lock.wait(left)

    def _ensure_pump(self) -> None:
        if self._thread is None:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._thread = threading.Thread(target=self._pump, name="warden-procs",
                                            daemon=True)
            self._thread.start()

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        watched: dict[int, Proc] = {}
        while True:
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    self._rewatch(poller, watched)
                    continue
                proc = watched.get(fd)
                if proc is None:
                    continue  # let go of earlier in this round
                # Unwatched before the next poll: a descriptor closed here may be reused by
                # a process started meanwhile, which _rewatch then registers anew.
                if fd == proc.pidfd:
                    gone = [*proc.pipes, proc.pidfd]
                    self._reap(proc)
                else:
                    self._read(proc, fd, None)
                    gone = [] if fd in proc.pipes else [fd]
                for f in gone:
                    if watched.pop(f, None) is not None:
                        poller.unregister(f)

    def _rewatch(self, poller: select.poll, watched: dict[int, Proc]) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self.lock:
            live = [p for p in self.procs.values() if p.status is None]
        for proc in live:
            for fd in (*proc.pipes, proc.pidfd):
                if fd not in watched:
                    watched[fd] = proc
                    poller.register(fd, select.POLLIN)

    def _read(self, proc: Proc, fd: int, budget: int | None) -> None:
        """Read what ``fd`` holds (at most ``budget`` bytes when given; 16 chunks at most
        otherwise, so that one busy process cannot starve the others)."""
        for _ in range(16 if budget is None else 1 << 30):
            want = STREAM_CHUNK if budget is None else min(STREAM_CHUNK, budget)
            if want <= 0:
                return
            try:
                data = os.read(fd, want)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            with self.lock:
                if not data:
                    pipe = proc.pipes.pop(fd, None)
                    if pipe is not None:
                        if fd == proc.tty:
                            proc.tty = -1
                        _close_quietly(pipe[1])
                    self.lock.notify_all()
                    return
                proc.take(proc.pipes[fd][0], data)
                self.lock.notify_all()
            if budget is not None:
                budget -= len(data)

    def _reap(self, proc: Proc) -> None:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except ChildProcessError:
            status, usage = 0, None
        proc.popen.returncode = os.waitstatus_to_exitcode(status)
        for fd in list(proc.pipes):
            try:
                waiting = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
            except OSError:
                waiting = 0
            self._read(proc, fd, waiting)
        with self.lock:
            for _, pipe in proc.pipes.values():
                _close_quietly(pipe)
            proc.pipes.clear()
            os.close(proc.pidfd)
            if proc.feed is not None:
                _close_quietly(proc.feed)
            proc.tty = -1
            proc.cpu = (usage.ru_utime, usage.ru_stime) if usage is not None else (0.0, 0.0)
            proc.status = status
            self.exited.append(proc)
            self._forget()
            self.lock.notify_all()

    def _forget(self) -> None:
        """Drop the oldest exited processes past KEEP_EXITED or EXITED_BYTES."""
        held = sum(p.ring_bytes for p in self.exited)
        while self.exited and (len(self.exited) > KEEP_EXITED or held > EXITED_BYTES):
            old = self.exited.popleft()
            held -= old.ring_bytes
            if self.procs.get(old.pid) is old:
                del self.procs[old.pid]


def _start_on_pty(argv: list[str], *, env: dict | None, cwd: str, size: tuple[int, int],
                  ) -> tuple[subprocess.Popen, dict[int, tuple[str, IO[bytes]]], IO[bytes]]:
    """``argv`` on the slave of a new pty of the sandbox's own devpts; its output is read
    from the master as "stdout", and writes go to a duplicate of the master."""
    master, slave = os.openpty()
    try:
        cols, rows = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        # Runs in the child after setsid(): the slave, already its stdin, becomes its
        # controlling terminal, so that job control and ^C reach its foreground group.
        popen = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                 env=env, start_new_session=True,
                                 preexec_fn=_take_controlling_tty)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    out = os.fdopen(master, "rb", buffering=0)
    feed = os.fdopen(os.dup(master), "wb", buffering=0)
    return popen, {master: ("stdout", out)}, feed


def _take_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def resize(proc: Proc, cols: int, rows: int) -> bool:
    """Set the terminal's size (the kernel sends SIGWINCH to its foreground group); False
    when ``proc`` has no terminal open."""
    if proc.tty < 0:
        return False
    fcntl.ioctl(proc.tty, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return True


def _close_quietly(file: object) -> None:
    try:
        file.close()  # type: ignore[attr-defined]
    except OSError:
        pass  # a flush into a pipe nobody reads any more: the descriptor is closed either way


table = Table()
