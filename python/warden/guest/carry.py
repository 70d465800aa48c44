"""How a fork server's inputs and results travel: msgpack, plus extension types for what plain
msgpack cannot carry, so that a value arrives as the type it left as.

==========  ====  ===========================================================================
Python      ext   body
==========  ====  ===========================================================================
int         1     beyond 64 bits only: the signed big-endian bytes of the number
set         2     the items, as a msgpack array (each item itself carried by these rules)
frozenset   3     as set
tuple       4     the items, as a msgpack array (plain msgpack turns a tuple into a list)
complex     5     [real, imag]
==========  ====  ===========================================================================

None, bool, int of at most 64 bits, float, str, bytes, list and dict (any keys this table
carries, tuples and frozensets included) are plain msgpack; a bytearray or memoryview arrives
as bytes. A subclass travels as its base type
(an IntEnum as int, a namedtuple as tuple, an OrderedDict as dict). Anything else (an object,
a function, a str holding a lone surrogate) cannot be carried: ``encode`` raises
InvalidArgument naming the value's type, before anything runs. Nesting is bounded by msgpack's
own limit on both sides.

Pure: no syscalls. ``decode`` takes hostile bytes on the host: it is bounded by the length of
what it is given, and anything malformed is a ProtocolError.
"""

from __future__ import annotations

from typing import Any

import msgpack

from warden.errors import InvalidArgument, ProtocolError

__all__ = ["decode", "encode"]

_BIG_INT, _SET, _FROZENSET, _TUPLE, _COMPLEX = 1, 2, 3, 4, 5
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1
# What a value with its own ext body may nest to before the decoder says no (msgpack's
# limit covers one body; these bodies nest through the hook).
_MAX_EXT_DEPTH = 64


def _seq(items: Any) -> bytes:
    return msgpack.packb(list(items), default=_default, strict_types=True, use_bin_type=True)


def _default(value: Any) -> Any:
    # strict_types: every subclass comes here, and so does every tuple.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        if _INT_MIN <= value <= _INT_MAX:
            return int(value)
        size = (value.bit_length() + 8) // 8
        return msgpack.ExtType(_BIG_INT, int(value).to_bytes(size, "big", signed=True))
    if isinstance(value, tuple):
        return msgpack.ExtType(_TUPLE, _seq(value))
    if isinstance(value, frozenset):
        return msgpack.ExtType(_FROZENSET, _seq(value))
    if isinstance(value, set):
        return msgpack.ExtType(_SET, _seq(value))
    if isinstance(value, complex):
        return msgpack.ExtType(_COMPLEX, _seq((value.real, value.imag)))
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, memoryview):
        return value.tobytes()
    raise TypeError(f"a {type(value).__name__} cannot be carried")


def encode(value: object, name: str = "input") -> bytes:
    """``value`` as bytes, or InvalidArgument saying why it cannot travel."""
    t = type(value)
    if t is bytes or t is str or value is None or t is bool or (
            t is int and _INT_MIN <= value <= _INT_MAX):  # type: ignore[operator]
        try:
            return msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise InvalidArgument(name, value, f"what a fork server carries ({exc})") from None
    try:
        return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError, RecursionError) as exc:
        raise InvalidArgument(
            name, value, f"what a fork server carries: None, bool, int, float, complex, str, "
            f"bytes, and lists, tuples, sets, frozensets and dicts of them ({exc})"
        ) from None


class _Decoder:
    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0

    def hook(self, code: int, data: bytes) -> Any:
        if code == _BIG_INT:
            return int.from_bytes(data, "big", signed=True)
        if code not in (_SET, _FROZENSET, _TUPLE, _COMPLEX):
            raise ValueError(f"unknown extension type {code}")
        self.depth += 1
        if self.depth > _MAX_EXT_DEPTH:
            raise ValueError(f"extension types nested deeper than {_MAX_EXT_DEPTH}")
        try:
            items = self.load(data)
        finally:
            self.depth -= 1
        if not isinstance(items, list):
            raise ValueError("an extension body that is not an array")
        if code == _TUPLE:
            return tuple(items)
        if code == _SET:
            return set(items)
        if code == _FROZENSET:
            return frozenset(items)
        if len(items) != 2 or not all(isinstance(x, float) for x in items):
            raise ValueError("a complex that is not two floats")
        return complex(items[0], items[1])

    def load(self, data: bytes) -> Any:
        # unpackb bounds every length by the size of ``data`` itself.
        return msgpack.unpackb(data, ext_hook=self.hook, raw=False, strict_map_key=False)


# One-byte values, and bytes alone (a fuzzer's input), decoded without msgpack: the fewer
# objects a fork server's child touches, the fewer pages it copies.
_ONE = {b"\xc0": None, b"\xc2": False, b"\xc3": True}
_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}


def _fast(data: bytes) -> Any:
    """The value of ``data`` if it is a positive fixint, None, a bool or one bin; else the
    ``_fast`` function itself (no value is that)."""
    n = len(data)
    if n == 1:
        return data[0] if data[0] < 0x80 else _ONE.get(data, _fast)
    width = _BIN.get(data[0], 0) if n else 0
    if width and n >= 1 + width and int.from_bytes(data[1:1 + width], "big") == n - 1 - width:
        return data[1 + width:]
    return _fast


def decode(data: bytes) -> Any:
    """The value ``encode`` made; ProtocolError for anything else."""
    value = _fast(data)
    if value is not _fast:
        return value
    try:
        return _Decoder().load(data)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise ProtocolError(f"a fork server's value could not be decoded "
                            f"({type(exc).__name__})") from None
