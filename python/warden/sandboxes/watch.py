"""warden.Watch: change events of a sandbox's workspace (``Sandbox.watch``), from inotify
inside the sandbox.

The watcher is a process of the sandbox (warden.guest.watcher, started like a notebook
context with its own source), so its events come to the host as any spawned process's output
does: kept in the worker's ring, read by offset, lost bytes counted. Its lines are hostile
input: each is at most MAX_LINE bytes of JSON, checked field by field, and an event's paths
are text relative to the workspace (no NUL, not absolute, no ``..``), never used as host
paths. Closing the Watch (or leaving its ``with``, or dropping the iterator) kills the
watcher, and the kernel frees its inotify instance with it; closing the sandbox ends the
iteration.
"""

from __future__ import annotations

import errno
import json
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from warden.errors import (
    CallFailed,
    ProcessNotFound,
    ProtocolError,
    TimeoutExceeded,
    WatchLimitExceeded,
    sandbox_file_error,
)
from warden.sandboxes.process import Process

if TYPE_CHECKING:
    from warden.sandboxes.sandbox import Sandbox

__all__ = ["KINDS", "MAX_LINE", "MAX_WATCHES", "Watch", "WatchEvent", "parse_line"]

KINDS = frozenset({"created", "modified", "deleted", "moved", "overflow"})
MAX_LINE = 64 << 10
MAX_PATH = 4096
# warden's own bound on the directories one watch holds, below the kernel's per-user limit.
MAX_WATCHES = 65536
_LIMITS = frozenset({"max_user_instances", "max_user_watches", "max_watches"})
_WATCHER = (Path(__file__).resolve().parent.parent / "guest" / "watcher.py").read_text()
_READY_S = 60.0
_END_S = 30.0


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``kind`` is created, modified, deleted or moved (or overflow: the kernel's
    queue overflowed and events were lost; path is then ""); ``path`` is relative to the
    workspace, ``dest`` the destination of a move (else None), ``is_dir`` whether it is a
    directory."""

    kind: str
    path: str
    dest: str | None = None
    is_dir: bool = False


def _hostile(why: str) -> ProtocolError:
    return ProtocolError(f"the watcher's line {why}; the sandbox is broken or hostile")


def _path(value: object) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_PATH or "\0" in value \
            or value.startswith("/") or ".." in value.split("/"):
        raise _hostile("holds a path that is not relative to the workspace")
    return value


def parse_line(line: bytes) -> WatchEvent | dict:
    """An event, or a control record ({"ready": n} or {"error": ...}) checked field by field."""
    if len(line) > MAX_LINE:
        raise _hostile(f"is over {MAX_LINE} bytes")
    try:
        got = json.loads(line)
    except (ValueError, RecursionError):
        raise _hostile("is not JSON") from None
    if type(got) is not dict:
        raise _hostile("is not a map")
    if "ready" in got or "error" in got:
        return _control(got)
    kind = got.get("kind")
    if type(kind) is not str or kind not in KINDS:
        raise _hostile("names no kind of event")
    if kind == "overflow":
        return WatchEvent("overflow", "")
    dest, is_dir = got.get("dest"), got.get("dir")
    if type(is_dir) is not bool or (dest is None) == (kind == "moved"):
        raise _hostile("has fields of the wrong types")
    return WatchEvent(kind, _path(got.get("path")), None if dest is None else _path(dest), is_dir)


def _control(got: dict) -> dict:
    if "ready" in got:
        if type(got["ready"]) is not int or got["ready"] < 0:
            raise _hostile("has a ready count that is not a count")
        return {"ready": got["ready"]}
    err, num, watched = got.get("errno"), got.get("errno"), got.get("watched", 0)
    if type(num) is not int or not 0 <= num < 4096 or type(watched) is not int or watched < 0:
        raise _hostile("has an error without an errno")
    if got.get("error") == "gone":
        return {"error": "gone", "errno": err}
    if got.get("error") != "limit" or got.get("limit") not in _LIMITS:
        raise _hostile("names no known error")
    return {"error": "limit", "limit": got["limit"], "errno": err, "watched": watched}


def start(box: Sandbox, path: str, recursive: bool) -> Process:
    """The watcher, started for ``path`` (a directory beneath the workspace, links refused)."""
    root = posixpath.normpath(path)
    return box.spawn(["python3", "-I", "-u", "-c", _WATCHER, root, "1" if recursive else "0",
                      str(MAX_WATCHES)], env={"PYTHONUNBUFFERED": "1"})


class Watch:
    """An iterator of WatchEvent from ``Sandbox.watch``: events after ``watch`` returned, in
    the order inotify gave them. ``close()`` (or the end of a ``with`` block) stops the
    watcher; the sandbox closing ends the iteration. A kernel limit reached while a new
    directory is watched is a WatchLimitExceeded raised by the iteration. Thread-safe for
    ``close`` from another thread; iterate from one thread."""

    def __init__(self, box: Sandbox, proc: Process, path: str) -> None:
        self._box, self._proc, self.path = box, proc, path
        self._buf = b""
        self._closed = False
        self.watched = self._ready()

    def _limit(self, rec: dict) -> WatchLimitExceeded:
        return WatchLimitExceeded(rec["limit"], self.path, self._box.id, rec["watched"])

    def _ready(self) -> int:
        try:
            for rec in self._records(_READY_S):
                if isinstance(rec, dict) and "ready" in rec:
                    return int(rec["ready"])
                if isinstance(rec, dict) and rec.get("error") == "limit":
                    raise self._limit(rec)
                if isinstance(rec, dict) and rec.get("error") == "gone":
                    raise sandbox_file_error(errno.ENOTDIR, self.path, op="watch",
                                             sandbox=self._box.id)
                raise _hostile("came before the watch was ready")
            raise ProtocolError("the watcher ended before it was ready; the sandbox is broken "
                                "or hostile")
        except BaseException:
            self.close()
            raise

    def _records(self, timeout: float) -> Iterator[WatchEvent | dict]:
        deadline = time.monotonic() + timeout
        for chunks in self._proc._chunks(deadline):
            if not chunks:
                raise TimeoutExceeded(f"the watcher of {self.path!r} in sandbox "
                                      f"{self._box.id} was not ready within {timeout:g}s")
            yield from self.take(chunks)

    def take(self, chunks: list[tuple[str, bytes]]) -> list[WatchEvent | dict]:
        """The records in a round of the watcher's output. Where the sandbox dropped bytes
        (its ring was full), the torn line is skipped and an overflow event given instead."""
        out: list[WatchEvent | dict] = []
        lost = self._proc.lost_bytes
        for stream, data in chunks:
            if stream != "stdout":
                continue
            self._buf += data
            while True:
                end = self._buf.find(b"\n")
                if end < 0:
                    if len(self._buf) > MAX_LINE:
                        raise _hostile(f"is over {MAX_LINE} bytes")
                    break
                line, self._buf = self._buf[:end], self._buf[end + 1:]
                if lost:
                    lost = self._proc.lost_bytes = 0
                    out.append(WatchEvent("overflow", ""))
                    continue  # the line before a loss may be torn
                out.append(parse_line(line))
        return out

    def event(self, rec: WatchEvent | dict) -> WatchEvent | None:
        """The event a record gives; None at the watcher's end; a limit raises."""
        if isinstance(rec, WatchEvent):
            return rec
        if rec.get("error") == "limit":
            self.close()
            raise self._limit(rec)
        if rec.get("error") == "gone":
            return None
        raise _hostile("repeats that it is ready")

    def ended(self, exc: BaseException) -> bool:
        """Whether a failed read means the iteration simply ends: the Watch or its sandbox
        was closed."""
        return isinstance(exc, (CallFailed, ProcessNotFound)) and (
            self._closed or not self._box._provider.usable(self._box._handle))

    def __iter__(self) -> Iterator[WatchEvent]:
        try:
            for chunks in self._proc._chunks(None):
                for rec in self.take(chunks):
                    ev = self.event(rec)
                    if ev is None:
                        return
                    yield ev
        except (CallFailed, ProcessNotFound) as exc:
            if not self.ended(exc):
                raise
        finally:
            self.close()

    def close(self) -> None:
        """Stop the watcher (idempotent); nothing when its sandbox is gone already."""
        if self._closed:
            return
        self._closed = True
        try:
            self._proc.kill()
            # Until it is reaped: its inotify instance is gone when close returns.
            self._proc.wait(timeout=_END_S)
        except (ProcessNotFound, CallFailed):
            pass

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
