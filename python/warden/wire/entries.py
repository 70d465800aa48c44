"""Replies of the workspace ops of warden.guest.fileops, checked field by field: what comes
out of a sandbox is hostile input."""

from __future__ import annotations

from dataclasses import dataclass

from warden.errors import ProtocolError

__all__ = ["CHUNK", "MAX_ENTRIES", "Entry", "parse_chunk", "parse_entries", "parse_entry"]

# The most one chunk of a file moved in or out carries, and the most entries one listing has.
CHUNK = 1 << 20
MAX_ENTRIES = 100_000

_KINDS = frozenset({"file", "dir", "link", "other"})
_MAX_PATH = 4096 * 4


def _hostile(what: str, why: str) -> ProtocolError:
    return ProtocolError(f"{what} {why}; the worker is broken or hostile")


@dataclass(frozen=True)
class Entry:
    """A workspace entry: ``path`` (relative to what was listed, or to the workspace for
    stat), ``type`` ("file", "dir", "link" — not followed — or "other"), ``size`` in bytes,
    ``mode`` (permission bits) and ``mtime`` (a time.time() value)."""

    path: str
    type: str
    size: int
    mode: int
    mtime: float


def parse_entry(value: object, what: str = "the stat result") -> Entry:
    if type(value) is not dict:
        raise _hostile(what, "is not a map")
    path, kind = value.get("path"), value.get("type")
    size, mode, mtime = value.get("size"), value.get("mode"), value.get("mtime")
    if type(path) is not str or not path or len(path) > _MAX_PATH or "\0" in path \
            or path.startswith("/") or ".." in path.split("/"):
        raise _hostile(what, "holds a path that is not a relative one")
    if kind not in _KINDS or type(kind) is not str:
        raise _hostile(what, "holds an unknown type")
    if type(size) is not int or not 0 <= size < 1 << 62 or type(mode) is not int \
            or not 0 <= mode <= 0o7777 or type(mtime) not in (int, float):
        raise _hostile(what, "holds a size, mode or mtime out of range")
    return Entry(path, kind, size, mode, float(mtime))  # type: ignore[arg-type]


def parse_entries(value: object, most: int) -> list[Entry]:
    what = "the entries"
    if type(value) is not list or len(value) > most:
        raise _hostile(what, f"are not a list of at most {most}")
    return [parse_entry(v, what) for v in value]


def parse_chunk(value: object, size: int) -> bytes:
    if type(value) is not bytes or len(value) > size:
        raise _hostile("a file chunk", f"is not bytes of at most {size}")
    return value
