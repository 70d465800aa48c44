"""Payloads too large for a frame, carried beside it and never through msgpack.

* A sealed memfd passed with SCM_RIGHTS (``{"$fd": index}`` in the message, the fd in the
  frame's ancillary data), mapped read-only by the receiver: no copy at all.
* A pipe passed with SCM_RIGHTS (``{"$pipe": index, "size": n}``), which the sender writes
  ``n`` bytes into after the frame and the receiver reads once. A worker answers this way:
  its result already exists as an object in the sandbox, and copying it into a memfd would
  hold two copies of it inside the sandbox's memory limit; a pipe holds the object and the
  pipe's buffer (1 MiB at most). The receiver checks ``n`` against its limit, keeps only
  what arrives, and reads within the request's deadline.
* A file in the sandbox's data area (``{"$file": relpath}``), opened beneath the data
  directory by warden.wire.paths (no symbolic link followed) and read once.

Each may add ``"$codec": "msgpack"`` when the payload is a value rather than bytes.
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import select
import stat
import time
import uuid
from collections.abc import Sequence
from typing import Any

from warden.errors import PathEscapeError, PayloadTooLarge, ProtocolError, TimeoutExceeded
from warden.wire.bounds import check_payload_file
from warden.wire.codec import decode_body, new_packer, pack
from warden.wire.paths import check_relative, open_beneath

__all__ = [
    "DEFAULT_MAX_LARGE",
    "feed_pipe",
    "is_large_ref",
    "make_memfd",
    "memfd_ref",
    "put_large",
    "read_large_file",
    "read_memfd",
    "read_pipe",
    "resolve_large",
    "write_pipe",
]

DEFAULT_MAX_LARGE = 1 << 30
_REQUIRED_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
_F_SETPIPE_SZ = 1031  # fcntl(2); Python's fcntl module names it from 3.10 on some builds only
_PIPE_SIZE = 1 << 20
_PIPE_CHUNK = 1 << 20


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


def read_memfd(fd: int, limit: int = DEFAULT_MAX_LARGE, *,
               close: bool = True) -> memoryview | bytes:
    """Map a received memfd read-only and close the fd (``close=False``: the caller keeps
    it, to send the same payload on). Refuses anything but a memfd sealed against writes,
    shrinking and growing."""
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
            m: mmap.mmap | None = None
        else:
            try:
                m = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
            except OSError as exc:
                raise ProtocolError(f"received memfd {fd} of {st.st_size} bytes cannot be "
                                    f"mapped ({exc.strerror}); the sender is broken or "
                                    "hostile") from None
    except BaseException:
        os.close(fd)
        raise
    if close:
        os.close(fd)
    return b"" if m is None else memoryview(m)


def memfd_ref(payload: object, index: int = 0) -> tuple[dict[str, Any], int]:
    """``(ref, fd)`` for sending ``payload`` beside a frame: bytes go as they are, anything
    else msgpack-encoded (marked with ``"$codec"``). Pass ``fd`` in the frame's fds at
    ``index``; the sender closes its copy after sending."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return {"$fd": index}, make_memfd(payload)
    body = pack(new_packer(), payload)
    return {"$fd": index, "$codec": "msgpack"}, make_memfd(body)



def write_pipe(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(read end, write end)`` of a new pipe for ``data``: send the read end beside a frame
    naming ``{"$pipe": index, "size": len(data)}``, close it, then ``feed_pipe`` the write
    end. The pipe's buffer is raised to 1 MiB where the kernel allows (fewer wake-ups)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, _F_SETPIPE_SZ, _PIPE_SIZE)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size or the user's pipe budget: the default serves
    return r, w


def feed_pipe(w: int, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` into pipe ``w`` and close it. A reader that went away (EPIPE) ends the
    write quietly: its side has already refused or abandoned the payload."""
    try:
        with memoryview(data) as whole, whole.cast("B") as view:
            pos = 0
            while pos < len(view):
                pos += os.write(w, view[pos:pos + _PIPE_CHUNK])
    except BrokenPipeError:
        pass
    finally:
        os.close(w)


def read_pipe(fd: int, size: object, limit: int = DEFAULT_MAX_LARGE,
              deadline: float | None = None) -> bytes:
    """Read exactly ``size`` bytes from a received pipe and close it. ``size`` is checked
    against ``limit`` first; what is kept grows with what arrives, so a sender that announces
    much and sends little costs the reader little. Fewer bytes before the writer closes is a
    ProtocolError; the read stops at ``deadline`` (TimeoutExceeded)."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise ProtocolError(f"received fd {fd} for a pipe payload is not a pipe")
        if type(size) is not int or size < 0:
            raise ProtocolError("a pipe payload's 'size' must be a whole number of bytes")
        if size > limit:
            raise PayloadTooLarge(size, limit, what="pipe payload", direction="incoming")
        os.set_blocking(fd, False)
        chunks: list[bytes] = []
        got = 0
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while got < size:
            try:
                chunk = os.read(fd, min(size - got, _PIPE_CHUNK))
            except BlockingIOError:
                wait = -1 if deadline is None else math.ceil((deadline - time.monotonic()) * 1000)
                if deadline is not None and wait <= 0 or not poller.poll(wait):
                    raise TimeoutExceeded(f"a pipe payload of {size} bytes did not arrive "
                                          f"before the deadline ({got} bytes came)") from None
                continue
            if not chunk:
                raise ProtocolError(f"a pipe payload announced {size} bytes and ended after "
                                    f"{got}; the sender is broken or hostile")
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


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
    if type(value) is not dict or not 1 <= len(value) <= 3:
        return False
    keys = set(value)
    return keys in ({"$fd"}, {"$fd", "$codec"}, {"$file"}, {"$file", "$codec"},
                    {"$pipe", "size"}, {"$pipe", "size", "$codec"})


def resolve_large(value: object, *, fds: Sequence[int] = (), data_dir: str | os.PathLike[str] | None
                  = None, limit: int = DEFAULT_MAX_LARGE, used: set[int] | None = None,
                  budget: int | None = None, deadline: float | None = None,
                  keep_fds: bool = False) -> object:
    """Replace a ``{"$fd"}``, ``{"$pipe"}`` or ``{"$file"}`` reference by its payload; return
    anything else unchanged. ``used`` collects the fds consumed (closed here, unless
    ``keep_fds``: then a memfd stays open for its caller to close). ``budget``: the decode
    budget of a msgpack payload (warden.wire.bounds); ``deadline``: of a pipe's read."""
    if not is_large_ref(value) or not isinstance(value, dict):
        return value
    codec = value.get("$codec")
    if codec not in (None, "msgpack"):
        raise ProtocolError(f"large-payload codec {codec!r} is unknown; use msgpack or none")
    data: bytes | memoryview
    if "$fd" in value or "$pipe" in value:
        index = value.get("$fd", value.get("$pipe"))
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(fds):
            raise ProtocolError(f"large-payload reference names fd #{index!r} but the frame "
                                f"carried {len(fds)} fds")
        if used is not None:
            if index in used:
                raise ProtocolError(f"large-payload fd #{index} is referenced twice")
            used.add(index)
        if "$fd" in value:
            # Kept open only when the mapping itself is the value (no codec).
            data = read_memfd(fds[index], limit, close=not keep_fds or codec is not None)
        else:
            data = read_pipe(fds[index], value["size"], limit, deadline)
    else:
        if data_dir is None:
            raise ProtocolError("a {'$file'} payload arrived but this side has no data directory")
        data = read_large_file(data_dir, value["$file"], limit)
    if codec == "msgpack":
        return decode_body(data, budget)
    return data
