"""Inputs and results that plain msgpack cannot carry (ints beyond 64 bits, sets, frozensets,
tuples, complex numbers) travel through a real fork server and arrive as the type they left
as; a value that cannot travel is an InvalidArgument from the call itself, before anything
is sent."""

from __future__ import annotations

import pytest
import warden
from warden.testing.forkserver import INPUT_CAP

SETUP = '''
def target(x):
    if type(x) is bytes and len(x) > 4096:
        return [len(x), set(x)]
    return [x, type(x).__name__]
'''

VALUES = [
    1 << 100, -(1 << 200), (1 << 64) - 1, -(1 << 63),
    {1, 2, 3}, frozenset({"a", b"b"}), set(), (1, (2, 3)), (), 2.5 - 1j,
    {(1, 2): frozenset({1 << 70}), "k": [{3, 4}, (5,)]},
    [None, True, 1.5, "s", b"\0\xff"],
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip_through_a_fork_server_keeps_value_and_type(fs, value):
    v = fs.run(value)
    assert v.outcome == "ok", v.describe()
    back, name = v.value
    assert back == value and type(back) is type(value) and name == type(value).__name__


def test_bytearray_and_memoryview_arrive_as_bytes(fs):
    assert fs.run(bytearray(b"ab")).value == [b"ab", "bytes"]
    assert fs.run(memoryview(b"cd")).value == [b"cd", "bytes"]


UNSENDABLE = [object(), {1, object()}, ("ok", lambda: 0), {"k": {object()}}, "\ud800",
              {frozenset(): object()}]


@pytest.mark.parametrize("value", UNSENDABLE, ids=repr)
def test_a_value_that_cannot_travel_is_invalid_argument(fs, value):
    with pytest.raises(warden.InvalidArgument) as info:
        fs.run(value)
    assert info.value.argument == "input"
    # In a list, at any place: map() itself refuses it, before any input is sent.
    inputs = [1] * 40 + [value]
    with pytest.raises(warden.InvalidArgument) as info:
        fs.map(inputs, jobs=1)
    assert info.value.argument == "inputs[40]"


def test_an_input_too_large_for_a_request_is_invalid_argument(fs):
    with pytest.raises(warden.InvalidArgument):
        fs.run(b"x" * (INPUT_CAP + 1))
    # Inputs that fit one by one but not together go in several requests.
    big = b"y" * (INPUT_CAP // 2)
    assert [v.value for v in fs.map([big, big, big], jobs=1)] == [[len(big), {ord("y")}]] * 3
