"""Frame codec and channel between host and worker.

A frame is a big-endian u32 body length followed by one msgpack body. Both sides cap the
body length (``DEFAULT_MAX_FRAME``): the sender refuses to encode an oversized frame, so
nothing is written, and the receiver refuses a header over its own cap and discards that
frame's body so the stream stays in step. Requests are dicts ``{"id": int, "op": str, ...}``;
replies are ``{"id", "ok": True, "result"}`` or ``{"id", "ok": False, "error": {...}}``.

Payloads too large for a frame travel beside it, never through msgpack:

* as a sealed memfd passed with SCM_RIGHTS (``{"$fd": index}`` in the message, the fd in the
  frame's ancillary data), mapped read-only by the receiver: no copy at all;
* as a file in the sandbox's data area (``{"$file": relpath}``), opened beneath the data
  directory without following symlinks and read once.

The codec part (``encode``, ``decode_body``, ``FrameReader``) is pure: no syscalls. ``Channel``
owns the socket I/O and is not thread-safe: one caller at a time per channel.
"""

from __future__ import annotations

import fcntl
import itertools
import math
import mmap
import os
import select
import socket
import stat
import struct
import threading
import time
import traceback as _traceback
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

try:
    from warden._core import wait_readable as _wait_readable
except ImportError:
    # The worker inside a container whose Python cannot load this host's native module:
    # its channel waits without spinning first.
    _wait_readable = None

from warden.errors import (
    CallFailed,
    PathEscapeError,
    PayloadTooLarge,
    PluginError,
    ProtocolError,
    TimeoutExceeded,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "INCOMPLETE",
    "MAX_FDS_PER_FRAME",
    "Channel",
    "ChannelClosed",
    "FrameReader",
    "decode_body",
    "encode",
    "error_from_reply",
    "error_reply",
    "is_large_ref",
    "make_memfd",
    "memfd_ref",
    "ok_reply",
    "put_large",
    "read_large_file",
    "read_memfd",
    "resolve_large",
]

DEFAULT_MAX_FRAME = 16 << 20
MAX_FRAME_LIMIT = 0xFFFFFFFF  # what a u32 length can say
MAX_FDS_PER_FRAME = 16
DEFAULT_MAX_LARGE = 1 << 30

_HEADER = struct.Struct(">I")
_HEADER_SIZE = _HEADER.size
# Bytes of an oversized body worth waiting for to learn its request id: a map header (<= 5),
# the key "id" as fixstr (3) and an int (<= 9).
_PEEK = 17
_SMALL_SEND = 64 << 10
# Reads go into a reused scratch buffer: recv(n) would allocate n bytes per call, and above
# glibc's mmap threshold (128 KiB) that is an mmap/munmap pair and fresh page faults per read.
_RECV_CHUNK = 64 << 10
_RECV_MAX_CHUNK = 4 << 20
_ANCBUF = socket.CMSG_SPACE(MAX_FDS_PER_FRAME * 4)
_INT_SIZE = struct.calcsize("i")
_MSG_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_REQUIRED_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW


def _default_spin_ns() -> int:
    """How long a channel polls for its peer's next frame before it sleeps (cpp/ipc/wait.h
    says why): WARDEN_SPIN_US microseconds, 50 by default, none with a single CPU (the
    peer could not run meanwhile) or without the native module."""
    env = os.environ.get("WARDEN_SPIN_US")
    try:
        us = 50 if env is None else int(env)
    except ValueError:
        raise ValueError(f"WARDEN_SPIN_US must be a whole number of microseconds, got "
                         f"{env!r}") from None
    if us < 0 or us > 1_000_000:
        raise ValueError(f"WARDEN_SPIN_US must be between 0 and 1000000, got {us}")
    if _wait_readable is None or len(os.sched_getaffinity(0)) < 2:
        return 0
    return us * 1000


# What _core.wait_readable answers (cpp/ipc/wait.h, cpp/bindings/ipc.cc).
_WAIT_TIMED_OUT, _WAIT_SPUN, _WAIT_SLEPT, _WAIT_INTERRUPTED = 0, 1, 2, 3

SPIN_NS = _default_spin_ns()
# After a wait that outlasted the spin, this many waits sleep at once: a peer that answers
# slowly costs one spin window in every SPIN_BACKOFF + 1 waits, not one in each.
SPIN_BACKOFF = 16


class ChannelClosed(CallFailed):
    """The peer closed the channel, or the channel was abandoned after a failed request."""


class _Incomplete:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INCOMPLETE"


INCOMPLETE: Any = _Incomplete()
"""What ``FrameReader.read`` returns while no complete frame is buffered (``None`` is a valid
message, so it cannot be the marker)."""


def _check_limit(name: str, limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FRAME_LIMIT:
        raise ValueError(f"{name} must be a whole number of bytes between 1 and {MAX_FRAME_LIMIT}, "
                         f"got {limit!r}")
    return limit


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, autoreset=True)


def _refuse_ext(code: int, data: bytes) -> object:
    raise ValueError(f"msgpack extension type {code} is not part of the warden protocol")


def _pack(packer: msgpack.Packer, msg: object) -> bytes:
    try:
        return packer.pack(msg)
    except (TypeError, ValueError, OverflowError) as exc:
        # The packer resets its buffer when pack() raises, so the packer stays usable.
        raise ProtocolError(
            f"cannot encode a {type(msg).__name__} message as msgpack ({exc}); send only dict, "
            "list, tuple, str, bytes, int (64-bit), float, bool and None"
        ) from exc


_local = threading.local()


def encode(msg: object, limit: int = DEFAULT_MAX_FRAME) -> bytes:
    """Return the frame for ``msg`` (header + body); raise PayloadTooLarge when the body is
    over ``limit`` bytes. The cap applies to the body, i.e. the value of the length header."""
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = _new_packer()
    body = _pack(packer, msg)
    if len(body) > limit:
        raise PayloadTooLarge(len(body), limit, what="outgoing frame")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes | bytearray | memoryview) -> object:
    """Decode one frame body; raise ProtocolError on anything that is not exactly one value."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False, ext_hook=_refuse_ext)
    except (ValueError, TypeError, OverflowError) as exc:
        # ValueError covers FormatError, StackError, ExtraData and truncated input; TypeError is
        # an unhashable map key (a map or array used as a key).
        raise ProtocolError(f"frame body of {len(body)} bytes is not a valid msgpack value: "
                            f"{type(exc).__name__}: {exc or 'bad format byte'}; the peer is broken or "
                            "hostile") from exc


def _peek_request_id(buf: bytearray, pos: int, end: int) -> int | None:
    """Read the request id off the front of a body without decoding the rest: every request
    and reply is a map whose first key is "id"."""
    head = bytes(buf[pos:end])
    if not head:
        return None
    b = head[0]
    if 0x80 <= b <= 0x8F:
        i = 1
    elif b == 0xDE:
        i = 3
    elif b == 0xDF:
        i = 5
    else:
        return None
    if head[i:i + 3] != b"\xa2id":
        return None
    rest = head[i + 3:]
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(rest)
    try:
        value = unpacker.unpack()
    except (ValueError, TypeError, msgpack.OutOfData):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


class FrameReader:
    """Incremental frame decoder over bytes fed in. Pure: it never touches a file descriptor.

    ``feed(data)`` buffers bytes; ``read()`` returns the next message or ``INCOMPLETE``;
    iterating yields every complete message. A header over the cap raises PayloadTooLarge
    (with ``.request_id`` when the body's first bytes carry one) and the reader discards that
    body as it arrives, without buffering it; a body that is not msgpack raises ProtocolError
    after being consumed. In both cases the next ``read()`` continues with the next frame.
    """

    __slots__ = ("_base", "_buf", "_pos", "_skip", "last_end", "last_start", "limit")

    def __init__(self, limit: int = DEFAULT_MAX_FRAME) -> None:
        self.limit = _check_limit("FrameReader limit", limit)
        self._buf = bytearray()
        self._pos = 0
        self._base = 0  # absolute stream offset of _buf[0]
        self._skip = 0  # bytes of an oversized body still to discard
        # Absolute stream offsets of the first byte of the last frame read() returned and of
        # the byte after it.
        self.last_start = -1
        self.last_end = -1

    @property
    def offset(self) -> int:
        """Absolute stream offset just past the bytes fed so far."""
        return self._base + len(self._buf)

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def wanted(self) -> int:
        """How many more bytes would complete the current frame (at least 1)."""
        avail = len(self._buf) - self._pos
        if self._skip:
            return self._skip - avail if self._skip > avail else 1
        if avail < _HEADER_SIZE:
            return _HEADER_SIZE - avail
        (n,) = _HEADER.unpack_from(self._buf, self._pos)
        if n > self.limit:
            return max(1, _HEADER_SIZE + min(n, _PEEK) - avail)
        return max(1, _HEADER_SIZE + n - avail)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._skip and self._pos == len(self._buf):
            # Discard an oversized body straight from the input: it never enters the buffer.
            self._compact_all()
            n = min(len(data), self._skip)
            self._skip -= n
            self._base += n
            if n == len(data):
                return
            data = memoryview(data)[n:]
        self._buf += data

    def _compact_all(self) -> None:
        self._base += len(self._buf)
        self._buf.clear()
        self._pos = 0

    def _consume_to(self, pos: int) -> None:
        buf = self._buf
        if pos >= len(buf):
            self._base += len(buf)
            buf.clear()
            self._pos = 0
        elif pos > 65536 and pos > len(buf) >> 1:
            del buf[:pos]
            self._base += pos
            self._pos = 0
        else:
            self._pos = pos

    def read(self) -> object:
        buf = self._buf
        pos = self._pos
        if self._skip:
            n = min(len(buf) - pos, self._skip)
            self._skip -= n
            pos += n
            self._consume_to(pos)
            if self._skip:
                return INCOMPLETE
            pos = self._pos
        avail = len(buf) - pos
        if avail < _HEADER_SIZE:
            return INCOMPLETE
        (n,) = _HEADER.unpack_from(buf, pos)
        start = pos + _HEADER_SIZE
        if n > self.limit:
            peek = min(n, _PEEK)
            if avail < _HEADER_SIZE + peek:
                return INCOMPLETE
            request_id = _peek_request_id(buf, start, start + peek)
            self._skip = n
            self._consume_to(start)
            # Drop whatever of the body is already buffered right away.
            if self._pos < len(self._buf):
                k = min(len(self._buf) - self._pos, self._skip)
                self._skip -= k
                self._consume_to(self._pos + k)
            exc = PayloadTooLarge(n, self.limit, what="incoming frame")
            exc.request_id = request_id  # type: ignore[attr-defined]
            raise exc
        end = start + n
        if len(buf) < end:
            return INCOMPLETE
        self.last_start = self._base + pos
        self.last_end = self._base + end
        try:
            with memoryview(buf)[start:end] as body:
                return decode_body(body)
        finally:
            # Consumed even when it does not decode: the next frame starts after it.
            self._consume_to(end)

    def read_chunk(self, data: bytes | bytearray | memoryview) -> object:
        """``feed(data)`` then ``read()``, with the same result; when nothing is buffered and
        ``data`` is exactly one frame within the cap (a warm call's request or reply), the
        body is decoded straight from ``data`` without being copied into the buffer."""
        n = len(data)
        if (n >= _HEADER_SIZE and self._pos == len(self._buf) and not self._skip):
            (size,) = _HEADER.unpack_from(data)
            if size + _HEADER_SIZE == n and size <= self.limit:
                start = self._base + len(self._buf)
                self.last_start = start
                self.last_end = start + n
                # Consumed even when it does not decode, as read() does.
                self._compact_all()
                self._base += n
                with memoryview(data)[_HEADER_SIZE:] as body:
                    return decode_body(body)
        self.feed(data)
        return self.read()

    def __iter__(self) -> Iterator[object]:
        while True:
            msg = self.read()
            if msg is INCOMPLETE:
                return
            yield msg


# ---------------------------------------------------------------------------------------------
# Replies


def ok_reply(request_id: int, result: object) -> dict:
    return {"id": request_id, "ok": True, "result": result}


def error_reply(request_id: int | None, exc: BaseException, *, origin: str = "plugin") -> dict:
    """The reply for a request that raised: its type, message and traceback text.

    ``origin`` is "plugin" when the plugin's code raised and "warden" when the worker itself
    refused (oversized frame, unknown op); the host maps the latter back to warden's errors.
    """
    if isinstance(exc, PluginError):
        etype, message, tb = exc.type, exc.message, exc.traceback
    else:
        etype = type(exc).__name__
        message = str(exc)
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
    error: dict[str, Any] = {"type": etype, "message": message, "traceback": tb, "origin": origin}
    if isinstance(exc, PayloadTooLarge):
        error["size"] = exc.size
        error["limit"] = exc.limit
    return {"id": request_id, "ok": False, "error": error}


def error_from_reply(error: object) -> Exception:
    """Turn the "error" of a reply into the exception to raise in the host."""
    if not isinstance(error, dict):
        return ProtocolError(f"reply error is a {type(error).__name__}, not a map; the worker "
                             "is broken or hostile")
    etype = error.get("type")
    message = error.get("message", "")
    tb = error.get("traceback", "")
    if not isinstance(etype, str) or not isinstance(message, str) or not isinstance(tb, str):
        return ProtocolError("reply error lacks string type/message/traceback; the worker is "
                             "broken or hostile")
    if error.get("origin") == "warden" and etype == "PayloadTooLarge":
        size, limit = error.get("size"), error.get("limit")
        if isinstance(size, int) and isinstance(limit, int):
            return PayloadTooLarge(size, limit, what="frame refused by the worker")
    if error.get("origin") == "warden" and etype == "ProtocolError":
        return ProtocolError(f"the worker refused the request: {message}")
    return PluginError(etype, message, tb)


# ---------------------------------------------------------------------------------------------
# Large payloads: sealed memfds and files in the data area


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
        if not stat.S_ISREG(st.st_mode):
            raise ProtocolError(f"received fd {fd} is not a regular memfd")
        if st.st_size > limit:
            raise PayloadTooLarge(st.st_size, limit, what="memfd payload")
        if st.st_size == 0:
            return b""
        m = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
        return memoryview(m)
    finally:
        os.close(fd)


def memfd_ref(payload: object, index: int = 0) -> tuple[dict, int]:
    """``(ref, fd)`` for sending ``payload`` beside a frame: bytes go as they are, anything
    else msgpack-encoded (marked with ``"$codec"``). Pass ``fd`` in the frame's fds at
    ``index``; the sender closes its copy after sending."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return {"$fd": index}, make_memfd(payload)
    body = _pack(_new_packer(), payload)
    return {"$fd": index, "$codec": "msgpack"}, make_memfd(body)


def _check_relpath(relpath: object) -> list[str]:
    if not isinstance(relpath, str) or not relpath or len(relpath) > 4096 or "\0" in relpath:
        raise PathEscapeError(f"large-payload path {relpath!r} is not a non-empty relative path; "
                              "use a path inside the data directory")
    if relpath.startswith("/"):
        raise PathEscapeError(f"large-payload path {relpath!r} is absolute; use a path relative "
                              "to the data directory")
    parts = relpath.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise PathEscapeError(f"large-payload path {relpath!r} has a {part or 'empty'!r} "
                                  "component; use a plain path inside the data directory")
    return parts


def _open_beneath(data_dir: str | os.PathLike, relpath: str, flags: int, mode: int = 0o644) -> int:
    """Open ``relpath`` inside ``data_dir`` component by component with O_NOFOLLOW, so that a
    symlink planted by the sandbox cannot point the host outside the data directory."""
    parts = _check_relpath(relpath)
    dirfd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=dirfd)
            except OSError as exc:
                raise PathEscapeError(f"large-payload path {relpath!r}: {part!r} is not a "
                                      f"directory inside {os.fspath(data_dir)!r} "
                                      f"({exc.strerror})") from exc
            os.close(dirfd)
            dirfd = nxt
        try:
            # O_NONBLOCK: a FIFO planted by the sandbox must not hang the host on open.
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                           mode, dir_fd=dirfd)
        except OSError as exc:
            raise PathEscapeError(f"cannot open large-payload file {relpath!r} inside "
                                  f"{os.fspath(data_dir)!r}: {exc.strerror} (symlinks are not "
                                  "followed)") from exc
    finally:
        os.close(dirfd)


def put_large(payload: object, data_dir: str | os.PathLike, *, name: str | None = None) -> dict:
    """Write ``payload`` to a new file in ``data_dir`` and return ``{"$file": relpath}``
    (plus ``"$codec": "msgpack"`` when the payload is not bytes)."""
    ref: dict[str, Any]
    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = memoryview(payload).cast("B")
        ref = {}
    else:
        data = memoryview(_pack(_new_packer(), payload))
        ref = {"$codec": "msgpack"}
    relpath = name or f"warden-large-{uuid.uuid4().hex}.bin"
    fd = _open_beneath(data_dir, relpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.set_blocking(fd, True)
        while data:
            n = os.write(fd, data)
            data = data[n:]
    finally:
        os.close(fd)
    return {"$file": relpath, **ref}


def read_large_file(data_dir: str | os.PathLike, relpath: str,
                    limit: int = DEFAULT_MAX_LARGE) -> bytes:
    """Read a regular file beneath ``data_dir``. It is read, not mapped: the other side can
    truncate a file it owns while it is mapped here, and that would kill this process with
    SIGBUS."""
    fd = _open_beneath(data_dir, relpath, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PathEscapeError(f"large-payload path {relpath!r} is not a regular file")
        if st.st_size > limit:
            raise PayloadTooLarge(st.st_size, limit, what=f"large-payload file {relpath!r}")
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
                                  what=f"large-payload file {relpath!r} (it grew while read)")
        return bytes(view[:got]) if got < len(out) else bytes(out)
    finally:
        os.close(fd)


def is_large_ref(value: object) -> bool:
    if type(value) is not dict or not 1 <= len(value) <= 2:
        return False
    keys = set(value)
    return keys in ({"$fd"}, {"$fd", "$codec"}, {"$file"}, {"$file", "$codec"})


def resolve_large(value: object, *, fds: Sequence[int] = (), data_dir: str | os.PathLike | None
                  = None, limit: int = DEFAULT_MAX_LARGE, used: set[int] | None = None) -> object:
    """Replace a ``{"$fd"}`` or ``{"$file"}`` reference by its payload; return anything else
    unchanged. ``used`` collects the fds consumed (read_memfd closes them)."""
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
        return decode_body(data)
    return data


# ---------------------------------------------------------------------------------------------
# Channel: frames over a connected unix stream socket


class Channel:
    """Frames over one connected socket, used by host and worker alike.

    Blocking I/O; a ``deadline`` (a ``time.monotonic()`` value) bounds a wait with poll(2).
    ``request``/``call`` send a request and wait for the reply with the same id; after a
    timeout or a broken reply the channel is abandoned (every later use raises ChannelClosed),
    so a late reply can never be taken for the answer to a later request. A PayloadTooLarge
    either way leaves the channel usable.
    """

    def __init__(self, sock: socket.socket | int, *, max_send: int = DEFAULT_MAX_FRAME,
                 max_recv: int = DEFAULT_MAX_FRAME, accept_fds: bool = True,
                 max_large: int = DEFAULT_MAX_LARGE, spin_ns: int | None = None) -> None:
        if isinstance(sock, int):
            sock = socket.socket(fileno=sock)
        if sock.family != socket.AF_UNIX and accept_fds:
            accept_fds = False
        sock.setblocking(True)
        self._sock = sock
        self._fd = sock.fileno()
        self.max_send = _check_limit("max_send", max_send)
        self.max_large = max_large
        self.accept_fds = accept_fds
        self._reader = FrameReader(max_recv)
        self._packer = _new_packer()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        # (chunk start, chunk end, fds) for every recvmsg that brought fds.
        self._pending_fds: list[tuple[int, int, list[int]]] = []
        self._ids = itertools.count(1)
        self._abandoned: str | None = None
        self._rcvtimeo = 0  # SO_RCVTIMEO now set on the socket, in microseconds
        self._scratch = bytearray(_RECV_CHUNK)
        self._scratch_view = memoryview(self._scratch)
        self.spin_ns = SPIN_NS if spin_ns is None else spin_ns
        self._spin_skip = 0  # waits left that sleep at once (SPIN_BACKOFF)

    @property
    def max_recv(self) -> int:
        return self._reader.limit

    def fileno(self) -> int:
        return self._fd

    @property
    def abandoned(self) -> str | None:
        """Why the channel may no longer be used, or None."""
        return self._abandoned

    def close(self) -> None:
        for _, _, fds in self._pending_fds:
            _close_all(fds)
        self._pending_fds.clear()
        self._sock.close()

    def __enter__(self) -> Channel:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def abandon(self, why: str) -> None:
        self._abandoned = why

    def _check_usable(self) -> None:
        if self._abandoned is not None:
            raise ChannelClosed(f"channel was abandoned: {self._abandoned}; replace the worker")

    # -- sending ------------------------------------------------------------------------------

    def send(self, msg: object, fds: Sequence[int] = (), deadline: float | None = None) -> None:
        """Send one frame (and ``fds`` with it). Raises PayloadTooLarge before anything is
        written when the body is over ``max_send``."""
        self._check_usable()
        body = _pack(self._packer, msg)
        n = len(body)
        if n > self.max_send:
            raise PayloadTooLarge(n, self.max_send, what="outgoing frame")
        header = _HEADER.pack(n)
        try:
            if fds or n > _SMALL_SEND:
                self._send_buffers([memoryview(header), memoryview(body)], fds, deadline)
            elif deadline is None:
                self._sock.sendall(header + body, _MSG_FLAGS)
            else:
                # A small frame almost always fits the socket's buffer at once: one send(2),
                # and the deadline-bound loop only for what did not fit.
                frame = header + body
                try:
                    sent = self._sock.send(frame, _MSG_FLAGS | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
                if sent < len(frame):
                    self._send_buffers([memoryview(frame)[sent:]], (), deadline)
        except TimeoutExceeded:
            # Part of the frame may be out: the stream can no longer be trusted to be in step.
            self.abandon("a send timed out part-way through a frame")
            raise
        except OSError as exc:
            raise ChannelClosed(f"cannot send on channel fd {self._fd}: {exc.strerror}; the "
                                "peer is gone") from exc

    def _send_buffers(self, bufs: list[memoryview], fds: Sequence[int],
                      deadline: float | None) -> None:
        if len(fds) > MAX_FDS_PER_FRAME:
            raise ValueError(f"a frame carries at most {MAX_FDS_PER_FRAME} fds, got {len(fds)}")
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] \
            if fds else []
        flags = _MSG_FLAGS | (socket.MSG_DONTWAIT if deadline is not None else 0)
        while bufs:
            # With a deadline the send is tried first and waited for only when the socket's
            # buffer is full: the common case, room in the buffer, then costs no poll(2).
            try:
                sent = self._sock.sendmsg(bufs, anc, flags)
            except BlockingIOError:
                self._wait(select.POLLOUT, deadline, "sending a frame")
                continue
            # The fds ride on the first byte: once anything went out, they went with it.
            anc = []
            while sent and bufs:
                if sent >= len(bufs[0]):
                    sent -= len(bufs[0])
                    bufs.pop(0)
                else:
                    bufs[0] = bufs[0][sent:]
                    sent = 0

    def _wait(self, events: int, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            poller = select.poll()
            poller.register(self._fd, events)
            if poller.poll(math.ceil(remaining * 1000)):
                return
        raise TimeoutExceeded(f"no progress {what} on channel fd {self._fd} before the deadline")

    # -- receiving ----------------------------------------------------------------------------

    def recv(self, deadline: float | None = None) -> object:
        """Next message; fds that came with it are closed (use recv_with_fds to keep them)."""
        msg, fds = self.recv_with_fds(deadline)
        if fds:
            _close_all(fds)
        return msg

    def recv_with_fds(self, deadline: float | None = None) -> tuple[object, list[int]]:
        """Next message and the fds that were sent with it (the caller owns them)."""
        self._check_usable()
        reader = self._reader
        msg = reader.read() if reader.buffered else INCOMPLETE
        retry = False
        while msg is INCOMPLETE:
            msg = self._fill(deadline, retry)
            retry = True
        if self._pending_fds:
            return msg, self._claim_fds(reader.last_start, reader.last_end)
        return msg, []

    def _claim_fds(self, start: int, end: int) -> list[int]:
        """The fds sent with the frame at [start, end).

        A unix stream socket hands over fds with the recvmsg that touches the first byte of
        the skb they were sent with, and stops reading after that skb; earlier skbs can be
        glued in front of it (unix(7), net/unix/af_unix.c). The sender starts every frame
        with its own sendmsg, so the fds of a chunk [a, b) belong to the one frame that
        starts inside the chunk and ends at or after its end."""
        mine: list[int] = []
        keep = []
        for a, b, fds in self._pending_fds:
            if a <= start < b <= end and not mine:
                mine = fds
            elif b <= start:
                # Sent with an earlier frame that was refused or not decoded.
                _close_all(fds)
            else:
                keep.append((a, b, fds))
        self._pending_fds = keep
        return mine

    def _set_rcvtimeo(self, seconds: float, exact: bool = True) -> None:
        # 0 means "no timeout" to the kernel; a positive remainder is rounded up to a
        # microsecond so that it never becomes 0.
        usec = 0 if seconds <= 0 else max(1, math.ceil(seconds * 1e6))
        if usec == self._rcvtimeo:
            return
        if not exact and 0 < self._rcvtimeo <= usec and self._rcvtimeo >= usec >> 1:
            # A timeout already set that ends before the deadline, and not long before it,
            # is kept: the read wakes no later than the deadline, and if it wakes early the
            # next read sets the exact remainder. Calls with the same timeout then cost no
            # setsockopt(2) each.
            return
        if not exact and usec > 1000:
            # Set a little short of the deadline, so that the next calls' remainders, a
            # little smaller each, still find it in range.
            usec -= usec >> 4
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                              struct.pack("ll", usec // 1_000_000, usec % 1_000_000))
        self._rcvtimeo = usec

    def _fill(self, deadline: float | None, retry: bool = False) -> object:
        """Read once from the socket; the next message if that completed one, else
        INCOMPLETE. ``retry``: an earlier read of this wait came back without one."""
        reader = self._reader
        wanted = reader.wanted()
        if wanted <= _RECV_CHUNK:
            view = self._scratch_view
        else:
            # A large frame: one temporary buffer per read, sized to what the frame still needs.
            view = memoryview(bytearray(min(wanted, _RECV_MAX_CHUNK)))
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutExceeded(f"no reply on channel fd {self._fd} before the deadline")
        if self.spin_ns and not self._spin_skip:
            # Poll for the frame without sleeping for a moment, then sleep until it comes
            # or the deadline passes; the read below then never blocks.
            got = _wait_readable(self._fd, self.spin_ns,
                                 -1 if deadline is None else math.ceil(remaining * 1000))
            if got == _WAIT_TIMED_OUT:
                if deadline is not None and deadline - time.monotonic() <= 0:
                    raise TimeoutExceeded(
                        f"no reply on channel fd {self._fd} before the deadline")
                return INCOMPLETE
            if got == _WAIT_SLEPT:
                self._spin_skip = SPIN_BACKOFF
            elif got == _WAIT_INTERRUPTED:
                return INCOMPLETE  # a signal's handlers ran: wait again for what is left
        else:
            if self._spin_skip:
                self._spin_skip -= 1
            if deadline is not None:
                # The kernel's receive timeout bounds the blocking read itself: one system
                # call per read instead of poll(2) and then recvmsg(2).
                self._set_rcvtimeo(remaining, exact=retry)
            elif self._rcvtimeo:
                self._set_rcvtimeo(0.0)
        try:
            if self.accept_fds:
                n, anc, flags, _ = self._sock.recvmsg_into([view], _ANCBUF,
                                                           socket.MSG_CMSG_CLOEXEC)
                if anc:
                    fds = _fds_from_ancillary(anc)
                    if flags & socket.MSG_CTRUNC or not n:
                        _close_all(fds)
                    elif fds:
                        start = reader.offset
                        self._pending_fds.append((start, start + n, fds))
            else:
                n = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            # SO_RCVTIMEO ran out (EAGAIN), or a signal came: the deadline decides.
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise TimeoutExceeded(
                    f"no reply on channel fd {self._fd} before the deadline") from None
            return INCOMPLETE
        except OSError as exc:
            raise ChannelClosed(f"cannot read channel fd {self._fd}: {exc.strerror}; the peer "
                                "is gone") from exc
        if not n:
            where = " in the middle of a frame" if reader.buffered else ""
            raise ChannelClosed(f"peer closed the channel{where}")
        return reader.read_chunk(view[:n])

    # -- request / reply ----------------------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    def request(self, msg: dict, *, deadline: float | None = None,
                fds: Sequence[int] = ()) -> tuple[dict, list[int]]:
        """Send ``msg`` (its "id" is set here) and return ``(reply, fds)`` for that id."""
        request_id = msg["id"] = next(self._ids)
        self.send(msg, fds, deadline)
        try:
            reply, rfds = self.recv_with_fds(deadline)
        except PayloadTooLarge:
            raise  # the reader skips the reply: the channel stays in step
        except TimeoutExceeded:
            self.abandon(f"request {request_id} ({msg.get('op')}) timed out")
            raise
        except (ProtocolError, ChannelClosed) as exc:
            self.abandon(f"request {request_id} ({msg.get('op')}) failed: {exc}")
            raise
        if type(reply) is not dict or reply.get("id") != request_id:
            _close_all(rfds)
            got = reply.get("id") if type(reply) is dict else type(reply).__name__
            self.abandon(f"reply to request {request_id} carried id {got!r}")
            raise ProtocolError(f"reply to request {request_id} carried id {got!r}; the worker "
                                "is out of step and will be replaced")
        return reply, rfds

    def call(self, op: str, *, deadline: float | None = None, fds: Sequence[int] = (),
             data_dir: str | os.PathLike | None = None, **fields: Any) -> object:
        """Make one request and return its result, resolving a large-payload reference in
        it; an error reply raises (PluginError, or PayloadTooLarge from the worker)."""
        msg = {"id": 0, "op": op}
        msg.update(fields)
        reply, rfds = self.request(msg, deadline=deadline, fds=fds)
        used: set[int] = set()
        try:
            if reply.get("ok") is True:
                return resolve_large(reply.get("result"), fds=rfds, data_dir=data_dir,
                                     limit=self.max_large, used=used)
            if reply.get("ok") is False:
                raise error_from_reply(reply.get("error"))
            raise ProtocolError(f"reply to request {reply['id']} has no boolean 'ok'")
        finally:
            _close_all([fd for i, fd in enumerate(rfds) if i not in used])


def _fds_from_ancillary(anc: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % _INT_SIZE
            fds.extend(struct.unpack(f"{usable // _INT_SIZE}i", data[:usable]))
    return fds


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass  # already closed: nothing left to release
