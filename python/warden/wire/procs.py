"""Replies of the background-process ops (warden.wire.ops PROC_*), checked field by field.

They come from inside a sandbox and are hostile input: each parser takes exactly the shape
the worker (warden.guest.procops) sends and raises ProtocolError for anything else. A read
reply carries at most the bytes asked for (and at least one chunk), each chunk at most
STREAM_CHUNK bytes of "stdout" or "stderr", and an offset that moved forward by exactly what
it carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from warden.errors import ProtocolError
from warden.wire.streams import STREAM_CHUNK, STREAMS

__all__ = ["GONE", "ProcExit", "ProcInfo", "ProcRead", "parse_list", "parse_read",
           "parse_start", "parse_written"]

GONE = "gone"
_MAX_COUNT = 1 << 62
_MAX_ARGV = 4096


def _hostile(what: str, why: str) -> ProtocolError:
    return ProtocolError(f"{what} {why}; the worker is broken or hostile")


def _map(value: object, what: str) -> dict[Any, Any]:
    if type(value) is not dict:
        raise _hostile(what, f"is a {type(value).__name__}, not a map")
    return value


def _int(value: object, what: str, key: str) -> int:
    if type(value) is not int or not 0 <= value < _MAX_COUNT:
        raise _hostile(what, f"field {key!r} is not a count")
    return value


def _seconds(value: object, what: str, key: str) -> float:
    if type(value) not in (int, float) or not 0 <= value < 1e12:  # type: ignore[operator]
        raise _hostile(what, f"field {key!r} is not a number of seconds")
    return float(value)  # type: ignore[arg-type]


def gone(value: object) -> bool:
    """Whether a reply says the pid is not (or no longer) in the worker's table."""
    return type(value) is dict and value.get(GONE) is True


def parse_start(value: object) -> tuple[int, float]:
    what = "the proc_start result"
    reply = _map(value, what)
    pid = _int(reply.get("pid"), what, "pid")
    if pid == 0:
        raise _hostile(what, "names pid 0")
    return pid, _seconds(reply.get("started"), what, "started")


@dataclass(frozen=True)
class ProcExit:
    exit_code: int | None
    signal: int | None
    cpu_s: float
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0


@dataclass(frozen=True)
class ProcRead:
    chunks: list[tuple[str, bytes]]
    next: int
    lost: int
    exit: ProcExit | None


def _exit(value: object, what: str) -> ProcExit | None:
    if value is None:
        return None
    end = _map(value, what)
    code, sig = end.get("exit_code"), end.get("signal")
    if (code is None) == (sig is None):
        raise _hostile(what, "has both or neither of an exit code and a signal")
    if code is not None and (type(code) is not int or not 0 <= code < 256):
        raise _hostile(what, "has an exit code out of range")
    if sig is not None and (type(sig) is not int or not 0 < sig < 65):
        raise _hostile(what, "names no signal")
    return ProcExit(code, sig, _seconds(end.get("cpu"), what, "cpu"),
                    _seconds(end.get("cpu_user", 0.0), what, "cpu_user"),
                    _seconds(end.get("cpu_system", 0.0), what, "cpu_system"))


def parse_read(value: object, offset: int, most: int) -> ProcRead:
    """A proc_read reply to a read from ``offset`` of at most ``most`` bytes."""
    what = "the proc_read result"
    reply = _map(value, what)
    raw = reply.get("chunks")
    if type(raw) is not list or len(raw) > max(1, most):
        raise _hostile(what, "has no list of chunks")
    chunks: list[tuple[str, bytes]] = []
    size = 0
    for item in raw:
        if type(item) is not list or len(item) != 2 or item[0] not in STREAMS \
                or type(item[0]) is not str or type(item[1]) is not bytes or not item[1]:
            raise _hostile(what, "holds a chunk that is not [stdout|stderr, some bytes]")
        if len(item[1]) > STREAM_CHUNK:
            raise _hostile(what, f"holds a chunk over {STREAM_CHUNK} bytes")
        size += len(item[1])
        chunks.append((item[0], item[1]))
    if size > most and len(chunks) > 1:
        raise _hostile(what, f"carries {size} bytes, over the {most} asked for")
    nxt, lost = _int(reply.get("next"), what, "next"), _int(reply.get("lost"), what, "lost")
    if nxt != offset + lost + size:
        raise _hostile(what, "moves its offset by other than what it carries")
    return ProcRead(chunks, nxt, lost, _exit(reply.get("exit"), what))


def parse_written(value: object, asked: int) -> int | None:
    """Bytes taken by the process's stdin, or None when its stdin is closed."""
    what = "the proc_write result"
    reply = _map(value, what)
    written = _int(reply.get("written"), what, "written")
    if written > asked:
        raise _hostile(what, "says it wrote more than it was given")
    return None if reply.get("closed") is True else written


@dataclass(frozen=True)
class ProcInfo:
    """A live process started through warden: ``started`` is a time.time() value, ``cpu_s``
    its user and system seconds so far (with its waited-for children)."""

    pid: int
    argv: list[str]
    started: float
    cpu_s: float


def parse_list(value: object) -> list[ProcInfo]:
    what = "the proc_list result"
    if type(value) is not list:
        raise _hostile(what, "is not a list")
    out = []
    for item in value:
        entry = _map(item, what)
        argv = entry.get("argv")
        if type(argv) is not list or not 0 < len(argv) <= _MAX_ARGV \
                or not all(type(a) is str for a in argv):
            raise _hostile(what, "holds an argv that is not a list of strings")
        out.append(ProcInfo(_int(entry.get("pid"), what, "pid"), list(argv),
                            _seconds(entry.get("started"), what, "started"),
                            _seconds(entry.get("cpu"), what, "cpu")))
    return out
