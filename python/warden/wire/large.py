"""Payloads too large for a frame, carried beside it and never through msgpack.

* A sealed memfd passed with SCM_RIGHTS (``{"$fd": index}`` in the message, the fd in the
  frame's ancillary data), mapped read-only by the receiver: no copy at all.
* A file in the sandbox's data area (``{"$file": relpath}``), opened beneath the data
  directory by warden.wire.paths (no symbolic link followed) and read once.

Either may add ``"$codec": "msgpack"`` when the payload is a value rather than bytes.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import stat
import uuid
from collections.abc import Sequence
from typing import Any

from warden.errors import PathEscapeError, PayloadTooLarge, ProtocolError
from warden.wire.bounds import check_payload_file
from warden.wire.codec import decode_body, new_packer, pack
from warden.wire.paths import check_relative, open_beneath

__all__ = [
    "DEFAULT_MAX_LARGE",
    "is_large_ref",
    "make_memfd",
    "memfd_ref",
    "put_large",
    "read_large_file",
    "read_memfd",
    "resolve_large",
]

DEFAULT_MAX_LARGE = 1 << 30
_REQUIRED_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW


def make_memfd(data: bytes | bytearray | memoryview, name: str = "warden-payload") -> int:
    """Return a memfd holding ``data``, sealed against writes and size changes, so that the
    receiver can map it without the sender changing it underneath (no SIGBUS, no TOCTOU)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data).cast("B")
        while view:
            n = os.write(fd, view)
            view = view[n:]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _REQUIRED_SEALS | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_memfd(fd: int, limit: int = DEFAULT_MAX_LARGE) -> memoryview | bytes:
    """Map a received memfd read-only and close the fd. Refuses anything but a memfd sealed
    against writes, shrinking and growing."""
    try:
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError as exc:
            raise ProtocolError(f"received fd {fd} is not a sealable memfd ({exc.strerror}); "
                                "large payloads must come as sealed memfds") from exc
        if seals & _REQUIRED_SEALS != _REQUIRED_SEALS:
            raise ProtocolError(f"received memfd {fd} is not sealed against write, shrink and "
                                "grow; the sender could change it while it is read")
        st = os.fstat(fd)
        if st.st_blksize > mmap.PAGESIZE:
            # MFD_HUGETLB: mapping it would take huge pages from the host's own pool.
            raise ProtocolError(f"received memfd {fd} is made of huge pages; large payloads "
                                "must come as ordinary sealed memfds")
        # By its real size, before a page of it is touched: over the limit, or sparse.
        check_payload_file(fd, st, limit, "memfd payload")
        if st.st_size == 0:
            return b""
        try:
            m = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError as exc:
            raise ProtocolError(f"received memfd {fd} of {st.st_size} bytes cannot be mapped "
                                f"({exc.strerror}); the sender is broken or hostile") from None
        return memoryview(m)
    finally:
        os.close(fd)


def memfd_ref(payload: object, index: int = 0) -> tuple[dict[str, Any], int]:
    """``(ref, fd)`` for sending ``payload`` beside a frame: bytes go as they are, anything
    else msgpack-encoded (marked with ``"$codec"``). Pass ``fd`` in the frame's fds at
    ``index``; the sender closes its copy after sending."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return {"$fd": index}, make_memfd(payload)
    body = pack(new_packer(), payload)
    return {"$fd": index, "$codec": "msgpack"}, make_memfd(body)



def _open_in_data(data_dir: str | os.PathLike[str], relpath: object, flags: int) -> int:
    """Open a ``{"$file"}`` path beneath ``data_dir`` by the one rule of warden.wire.paths.
    The path must be canonical (warden writes them so); O_NONBLOCK, so that a FIFO planted
    by the sandbox cannot hang the host on open."""
    rel = check_relative(relpath, canonical=True)
    try:
        return open_beneath(data_dir, rel, flags | os.O_NONBLOCK)
    except PathEscapeError:
        raise
    except OSError as exc:
        raise PathEscapeError(f"cannot open large-payload file {rel!r} in the data directory: "
                              f"{exc.strerror}", path=rel) from None


def put_large(payload: object, data_dir: str | os.PathLike[str], *,
              name: str | None = None) -> dict[str, Any]:
    """Write ``payload`` to a new file in ``data_dir`` and return ``{"$file": relpath}``
    (plus ``"$codec": "msgpack"`` when the payload is not bytes)."""
    ref: dict[str, Any]
    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = memoryview(payload).cast("B")
        ref = {}
    else:
        data = memoryview(pack(new_packer(), payload))
        ref = {"$codec": "msgpack"}
    relpath = name or f"warden-large-{uuid.uuid4().hex}.bin"
    fd = _open_in_data(data_dir, relpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.set_blocking(fd, True)
        while data:
            n = os.write(fd, data)
            data = data[n:]
    finally:
        os.close(fd)
    return {"$file": relpath, **ref}


def read_large_file(data_dir: str | os.PathLike[str], relpath: str,
                    limit: int = DEFAULT_MAX_LARGE) -> bytes:
    """Read a regular file beneath ``data_dir``. It is read, not mapped: the other side can
    truncate a file it owns while it is mapped here, and that would kill this process with
    SIGBUS."""
    fd = _open_in_data(data_dir, relpath, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PathEscapeError(f"large-payload path {relpath!r} is not a regular file",
                                  path=relpath)
        check_payload_file(fd, st, limit, f"large-payload file {relpath!r}")
        os.set_blocking(fd, True)
        out = bytearray(st.st_size)
        view = memoryview(out)
        got = 0
        while got < len(out):
            n = os.readv(fd, [view[got:]])
            if n == 0:
                break
            got += n
        # One more byte means the file grew after fstat: refuse rather than read unbounded.
        if got == len(out) and os.read(fd, 1):
            raise PayloadTooLarge(st.st_size + 1, st.st_size,
                                  what=f"large-payload file {relpath!r} (it grew while read)",
                                  direction="incoming")
        return bytes(view[:got]) if got < len(out) else bytes(out)
    finally:
        os.close(fd)


def is_large_ref(value: object) -> bool:
    if type(value) is not dict or not 1 <= len(value) <= 2:
        return False
    keys = set(value)
    return keys in ({"$fd"}, {"$fd", "$codec"}, {"$file"}, {"$file", "$codec"})


def resolve_large(value: object, *, fds: Sequence[int] = (), data_dir: str | os.PathLike[str] | None
                  = None, limit: int = DEFAULT_MAX_LARGE, used: set[int] | None = None,
                  budget: int | None = None) -> object:
    """Replace a ``{"$fd"}`` or ``{"$file"}`` reference by its payload; return anything else
    unchanged. ``used`` collects the fds consumed (read_memfd closes them). ``budget``: the
    decode budget of a msgpack payload (warden.wire.bounds)."""
    if not is_large_ref(value) or not isinstance(value, dict):
        return value
    codec = value.get("$codec")
    if codec not in (None, "msgpack"):
        raise ProtocolError(f"large-payload codec {codec!r} is unknown; use msgpack or none")
    if "$fd" in value:
        index = value["$fd"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(fds):
            raise ProtocolError(f"large-payload reference names fd #{index!r} but the frame "
                                f"carried {len(fds)} fds")
        if used is not None:
            if index in used:
                raise ProtocolError(f"large-payload fd #{index} is referenced twice")
            used.add(index)
        data: bytes | memoryview = read_memfd(fds[index], limit)
    else:
        if data_dir is None:
            raise ProtocolError("a {'$file'} payload arrived but this side has no data directory")
        data = read_large_file(data_dir, value["$file"], limit)
    if codec == "msgpack":
        return decode_body(data, budget)
    return data
