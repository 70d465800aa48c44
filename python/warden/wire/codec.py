"""The frame codec: pure, no syscalls.

A frame is a big-endian u32 body length followed by one msgpack body. Both sides cap the
body length (``DEFAULT_MAX_FRAME``): the sender refuses to encode an oversized frame, so
nothing is written, and the receiver refuses a header over its own cap and discards that
frame's body so the stream stays in step. A receiver given a decode budget
(warden.wire.bounds) refuses a body that would decode to more than it before decoding it,
and decodes a large body in slices, so that no one call holds the GIL for long. Message shapes are in warden.wire.ops (requests)
and warden.wire.replies (replies).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from typing import Any

import msgpack

from warden.errors import PayloadTooLarge, ProtocolError
from warden.wire.bounds import check_body

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "INCOMPLETE",
    "MAX_FRAME_LIMIT",
    "FrameReader",
    "check_limit",
    "decode_body",
    "encode",
    "frame_header",
    "new_packer",
    "pack",
]

DEFAULT_MAX_FRAME = 16 << 20
MAX_FRAME_LIMIT = 0xFFFFFFFF  # what a u32 length can say

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
# Bytes of an oversized body worth waiting for to learn its request id: a map header (<= 5),
# the key "id" as fixstr (3) and an int (<= 9).
_PEEK = 17


class _Incomplete:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INCOMPLETE"


INCOMPLETE: Any = _Incomplete()
"""What ``FrameReader.read`` returns while no complete frame is buffered (``None`` is a valid
message, so it cannot be the marker)."""


def check_limit(name: str, limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FRAME_LIMIT:
        raise ValueError(f"{name} must be a whole number of bytes between 1 and {MAX_FRAME_LIMIT}, "
                         f"got {limit!r}")
    return limit


def new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, autoreset=True)


def _refuse_ext(code: int, data: bytes) -> object:
    raise ValueError(f"msgpack extension type {code} is not part of the warden protocol")


def pack(packer: msgpack.Packer, msg: object) -> bytes:
    try:
        return bytes(packer.pack(msg))
    except (TypeError, ValueError, OverflowError) as exc:
        # The packer resets its buffer when pack() raises, so the packer stays usable.
        raise ProtocolError(
            f"cannot encode a {type(msg).__name__} message as msgpack ({exc}); send only dict, "
            "list, tuple, str, bytes, int (64-bit), float, bool and None"
        ) from exc


_local = threading.local()


def frame_header(size: int) -> bytes:
    return _HEADER.pack(size)


def encode(msg: object, limit: int = DEFAULT_MAX_FRAME) -> bytes:
    """Return the frame for ``msg`` (header + body); raise PayloadTooLarge when the body is
    over ``limit`` bytes. The cap applies to the body, i.e. the value of the length header."""
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = new_packer()
    body = pack(packer, msg)
    if len(body) > limit:
        raise PayloadTooLarge(len(body), limit, what="outgoing frame",
                              direction="outgoing")
    return _HEADER.pack(len(body)) + body


# A body over this is decoded a slice at a time: msgpack's streaming decoder keeps its place
# between slices, and the GIL can pass to other threads in between.
DECODE_SLICE = 1 << 20


def _bad_body(n: int, exc: Exception) -> ProtocolError:
    # ValueError covers FormatError, StackError, ExtraData and truncated input; TypeError is
    # an unhashable map key (a map or array used as a key).
    return ProtocolError(f"frame body of {n} bytes is not a valid msgpack value: "
                         f"{type(exc).__name__}: {exc or 'bad format byte'}; the peer is broken "
                         "or hostile")


def _decode_sliced(body: memoryview) -> object:
    n = len(body)
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, ext_hook=_refuse_ext,
                                max_buffer_size=n, max_str_len=n, max_bin_len=n,
                                max_array_len=n, max_map_len=n, max_ext_len=0)
    value: object = INCOMPLETE
    for at in range(0, n, DECODE_SLICE):
        unpacker.feed(body[at:at + DECODE_SLICE])
        try:
            value = unpacker.unpack()
        except msgpack.OutOfData:
            continue
        if at + DECODE_SLICE < n or unpacker.tell() != n:
            raise ValueError("extra data after the value")
    if value is INCOMPLETE:
        raise ValueError("the value is cut short")
    return value


def decode_body(body: bytes | bytearray | memoryview, budget: int | None = None) -> object:
    """Decode one frame body; raise ProtocolError on anything that is not exactly one value,
    or, given a ``budget`` in bytes, on a body whose decoded objects could cost more."""
    check_body(body, budget)
    try:
        if len(body) <= DECODE_SLICE:
            return msgpack.unpackb(body, raw=False, strict_map_key=False,
                                   ext_hook=_refuse_ext)
        with memoryview(body) as view:
            return _decode_sliced(view.cast("B"))
    except (ValueError, TypeError, OverflowError) as exc:
        raise _bad_body(len(body), exc) from exc


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

    ``budget``: the decode budget of each body (warden.wire.bounds.check_body).
    ``feed(data)`` buffers bytes; ``read()`` returns the next message or ``INCOMPLETE``;
    iterating yields every complete message. A header over the cap raises PayloadTooLarge
    (with ``.request_id`` when the body's first bytes carry one) and the reader discards that
    body as it arrives, without buffering it; a body that is not msgpack raises ProtocolError
    after being consumed. In both cases the next ``read()`` continues with the next frame.
    """

    __slots__ = ("_base", "_buf", "_pos", "_skip", "budget", "last_end", "last_start", "limit")

    def __init__(self, limit: int = DEFAULT_MAX_FRAME, budget: int | None = None) -> None:
        self.limit = check_limit("FrameReader limit", limit)
        self.budget = budget  # decode budget of each body (warden.wire.bounds), None: none
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
        if avail < HEADER_SIZE:
            return HEADER_SIZE - avail
        n: int = _HEADER.unpack_from(self._buf, self._pos)[0]
        if n > self.limit:
            return max(1, HEADER_SIZE + min(n, _PEEK) - avail)
        return max(1, HEADER_SIZE + n - avail)

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

    def drop(self) -> None:
        """Forget everything buffered (the channel was given up): its memory goes at once."""
        self._buf = bytearray()
        self._pos = self._skip = 0

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
        if avail < HEADER_SIZE:
            return INCOMPLETE
        (n,) = _HEADER.unpack_from(buf, pos)
        start = pos + HEADER_SIZE
        if n > self.limit:
            peek = min(n, _PEEK)
            if avail < HEADER_SIZE + peek:
                return INCOMPLETE
            request_id = _peek_request_id(buf, start, start + peek)
            self._skip = n
            self._consume_to(start)
            # Drop whatever of the body is already buffered right away.
            if self._pos < len(self._buf):
                k = min(len(self._buf) - self._pos, self._skip)
                self._skip -= k
                self._consume_to(self._pos + k)
            exc = PayloadTooLarge(n, self.limit, what="incoming frame", direction="incoming")
            exc.request_id = request_id  # type: ignore[attr-defined]
            raise exc
        end = start + n
        if len(buf) < end:
            return INCOMPLETE
        self.last_start = self._base + pos
        self.last_end = self._base + end
        try:
            with memoryview(buf)[start:end] as body:
                return decode_body(body, self.budget)
        finally:
            # Consumed even when it does not decode: the next frame starts after it.
            self._consume_to(end)

    def read_chunk(self, data: bytes | bytearray | memoryview) -> object:
        """``feed(data)`` then ``read()``, with the same result; when nothing is buffered and
        ``data`` is exactly one frame within the cap (a warm call's request or reply), the
        body is decoded straight from ``data`` without being copied into the buffer."""
        n = len(data)
        if (n >= HEADER_SIZE and self._pos == len(self._buf) and not self._skip):
            (size,) = _HEADER.unpack_from(data)
            if size + HEADER_SIZE == n and size <= self.limit:
                start = self._base + len(self._buf)
                self.last_start = start
                self.last_end = start + n
                # Consumed even when it does not decode, as read() does.
                self._compact_all()
                self._base += n
                with memoryview(data)[HEADER_SIZE:] as body:
                    return decode_body(body, self.budget)
        self.feed(data)
        return self.read()

    def __iter__(self) -> Iterator[object]:
        while True:
            msg = self.read()
            if msg is INCOMPLETE:
                return
            yield msg
