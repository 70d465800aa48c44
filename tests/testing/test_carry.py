"""warden.guest.carry's short cuts (one-byte values and bytes alone decode without msgpack)
give what msgpack gives, and refuse what msgpack refuses."""

from __future__ import annotations

import msgpack
import pytest
from warden.errors import ProtocolError
from warden.guest import carry


@pytest.mark.parametrize("value", [0, 1, 127, 128, -1, -33, None, True, False, b"", b"\x00",
                                   b"x" * 255, b"y" * 256, b"z" * 70000, "", "s", 1 << 63,
                                   -(1 << 63), (1 << 64) - 1, 1 << 64, [1], {"v": b"a"}, (1,)])
def test_round_trip_keeps_value_and_type(value):
    data = carry.encode(value)
    back = carry.decode(data)
    assert back == value and type(back) is type(value)
    if type(value) in (bytes, bool, type(None)) or (
            type(value) is int and -(1 << 63) <= value < (1 << 64)):
        assert msgpack.unpackb(data) == value  # plain msgpack, read the same either way


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\xc4", b"\xc4\x05ab", b"\xc4\x01ab",
                                  b"\xc5\x00", b"\xc5\x00\x03ab", b"\xc6\x00\x00\x00\x09x",
                                  b"\xc0\xc0", b"\x01\x02"])
def test_malformed_is_a_protocol_error(data):
    with pytest.raises(ProtocolError):
        carry.decode(data)
