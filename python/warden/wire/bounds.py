"""How much of the host's memory and descriptor table one reply from a sandbox may take.

What comes out of a sandbox is hostile input. A reply (its frame, and a memfd or a
``{"$file"}`` payload beside it) may make the host allocate at most a *decode budget*:

    budget = min(absolute cap, max(DECODE_FLOOR, DECODE_FACTOR x the sandbox's memory limit))

The absolute cap is ``WARDEN_MAX_DECODE_BYTES`` (bytes; 1 GiB when unset), or the
``max_decode_bytes`` a provider is given. The budget bounds an upper estimate of the Python
objects a body decodes to (``decode_cost``: walked once before decoding, in C without the
GIL, or in Python where the native module is missing), and the size of a memfd or file
payload, which must also not be sparse. Bodies so small that even the most expensive bytes
(one-byte empty maps in an array, ``COST_PER_BYTE`` each) stay within the budget are not walked.

A reply carries at most ``REPLY_FDS`` descriptors (one sealed memfd named by ``{"$fd": 0}``);
a channel closes any other at once and treats it as a broken peer.
"""

from __future__ import annotations

import os
import stat

from warden.errors import PayloadTooLarge, ProtocolError

try:
    from warden._core import DECODE_COST_PER_BYTE as COST_PER_BYTE
    from warden._core import decode_cost as _native_cost
except ImportError:  # the worker in a container without this host's native module
    _native_cost = None  # type: ignore[assignment]
    COST_PER_BYTE = 248

__all__ = ["COST_PER_BYTE", "DECODE_FACTOR", "DECODE_FLOOR", "DEFAULT_MAX_DECODE",
           "ENV_MAX_DECODE", "MAX_DEPTH", "REPLY_FDS", "check_body", "check_payload_file",
           "absolute_cap", "decode_budget", "decode_cost"]

ENV_MAX_DECODE = "WARDEN_MAX_DECODE_BYTES"
DEFAULT_MAX_DECODE = 1 << 30
DECODE_FACTOR = 2
DECODE_FLOOR = 32 << 20
MAX_DEPTH = 512
REPLY_FDS = 1

# Estimates of the decoded objects (cpp/ipc/decode_cost.h has the same numbers).
_MAP, _MAP_ITEM, _ARRAY, _SLOT, _STR, _BIN, _NUMBER = 240, 56, 64, 8, 80, 40, 40
_OVER, _MALFORMED, _TOO_DEEP = -1, -2, -3


def absolute_cap(cap: int | None = None) -> int:
    """The absolute cap: ``cap`` when given (a provider's ``max_decode_bytes``), else
    ``WARDEN_MAX_DECODE_BYTES``, else 1 GiB; at least 1 MiB."""
    what = "max_decode_bytes"
    if cap is None:
        env = os.environ.get(ENV_MAX_DECODE, "")
        if not env:
            return DEFAULT_MAX_DECODE
        what = ENV_MAX_DECODE
        try:
            cap = int(env)
        except ValueError:
            raise ValueError(f"{what} must be a whole number of bytes, got {env!r}") from None
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1 << 20:
        raise ValueError(f"{what} must be a whole number of bytes of at least 1048576 (1 MiB), "
                         f"got {cap!r}")
    return cap


def decode_budget(memory_bytes: int, cap: int | None = None) -> int:
    """The most one reply of a sandbox with ``memory_bytes`` of memory may cost the host:
    DECODE_FACTOR times that, at least DECODE_FLOOR, at most the absolute cap."""
    return min(absolute_cap(cap), max(DECODE_FLOOR, DECODE_FACTOR * memory_bytes))


def _py_cost(body: bytes | bytearray | memoryview, budget: int, max_depth: int) -> int:
    """decode_cost in Python (cpp/ipc/decode_cost.cc says how)."""
    data = bytes(body)
    n, pos, cost = len(data), 0, 0
    open_: list[int] = []
    while True:
        if pos >= n:
            return _MALFORMED
        b = data[pos]
        pos += 1
        opened = 0
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
            pass
        elif b <= 0x8F:
            opened, cost = 2 * (b & 0x0F), cost + _MAP + _MAP_ITEM * (b & 0x0F)
        elif b <= 0x9F:
            opened, cost = b & 0x0F, cost + _ARRAY + _SLOT * (b & 0x0F)
        elif 0xCA <= b <= 0xD3:
            pos += (4, 8, 1, 2, 4, 8, 1, 2, 4, 8)[b - 0xCA]
            cost += _NUMBER
        else:
            width = {0xC4: 1, 0xD9: 1, 0xC5: 2, 0xDA: 2, 0xDC: 2, 0xDE: 2,
                     0xC6: 4, 0xDB: 4, 0xDD: 4, 0xDF: 4}.get(b, 0 if b <= 0xBF else -1)
            if width < 0 or pos + width > n:
                return _MALFORMED
            size = (b & 0x1F) if b <= 0xBF else int.from_bytes(data[pos:pos + width], "big")
            pos += width
            if b in (0xDC, 0xDD):
                opened, cost = size, cost + _ARRAY + _SLOT * size
            elif b in (0xDE, 0xDF):
                opened, cost = 2 * size, cost + _MAP + _MAP_ITEM * size
            else:
                chunk = data[pos:pos + size]
                pos += size
                wide = 1 if b in (0xC4, 0xC5, 0xC6) or max(chunk, default=0) < 0xC4 else (
                    4 if max(chunk) >= 0xF0 else 2)
                cost += (_BIN if b in (0xC4, 0xC5, 0xC6) else _STR) + wide * size
        if pos > n or opened > n - pos:
            return _MALFORMED
        if cost > budget:
            return _OVER
        if opened:
            if len(open_) >= max_depth:
                return _TOO_DEEP
            open_.append(opened)
            continue
        while open_:
            open_[-1] -= 1
            if open_[-1]:
                break
            open_.pop()
        if not open_:
            return cost if pos == n else _MALFORMED


def decode_cost(body: bytes | bytearray | memoryview, budget: int,
                max_depth: int = MAX_DEPTH) -> int:
    """An upper estimate in bytes of the objects ``body`` decodes to; -1 when over
    ``budget`` (found without walking further), -2 when malformed, -3 when too deep."""
    if _native_cost is not None:
        return int(_native_cost(body, budget, max_depth))
    return _py_cost(body, budget, max_depth)


def check_body(body: bytes | bytearray | memoryview, budget: int | None) -> None:
    """Refuse, with ProtocolError, a frame body that would cost more than ``budget`` bytes to
    decode, or nest deeper than MAX_DEPTH. ``None``: no budget (a trusted peer)."""
    if budget is None or len(body) * COST_PER_BYTE <= budget:
        return
    cost = decode_cost(body, budget)
    if cost == _OVER:
        raise ProtocolError(f"a body of {len(body)} bytes would decode to more than the "
                            f"{budget}-byte decode budget of this sandbox (DECODE_FACTOR x "
                            f"its memory limit, at most {ENV_MAX_DECODE}); the worker is "
                            "broken or hostile")
    if cost == _TOO_DEEP:
        raise ProtocolError(f"a body of {len(body)} bytes nests containers deeper than "
                            f"{MAX_DEPTH}; the worker is broken or hostile")
    if cost == _MALFORMED:
        raise ProtocolError(f"a body of {len(body)} bytes is not exactly one msgpack value of "
                            "the warden protocol; the worker is broken or hostile")


def check_payload_file(fd: int, st: os.stat_result, limit: int, what: str) -> None:
    """Refuse a memfd or file payload by its real size before it is mapped or read: over
    ``limit`` bytes (PayloadTooLarge), or sparse (ProtocolError): a hole costs its sender
    nothing and the reader a page for every 4 KiB it reads."""
    if not stat.S_ISREG(st.st_mode):
        raise ProtocolError(f"{what} is not a regular file")
    if st.st_size > limit:
        raise PayloadTooLarge(st.st_size, limit, what=what, direction="incoming")
    if st.st_size == 0:
        return
    try:
        sparse = os.lseek(fd, 0, os.SEEK_HOLE) < st.st_size
    except OSError:
        # A file system that cannot say where its holes are: count the blocks it holds.
        sparse = st.st_blocks * 512 < st.st_size - st.st_size % 4096
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
    if sparse:
        raise ProtocolError(f"{what} of {st.st_size} bytes is sparse (it holds "
                            f"{st.st_blocks * 512} bytes of data); payloads must be written "
                            "out in full")
