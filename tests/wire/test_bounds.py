"""The decode budget (warden.wire.bounds): the cost walk in C and in Python agree, a body over
the budget is refused before it is decoded, a large body decodes in slices to the same value,
sparse or oversized payload files are refused by their real size, and the absolute cap is
configurable."""

from __future__ import annotations

import fcntl
import os
import socket
import struct

import msgpack
import pytest
from warden.errors import PayloadTooLarge, ProtocolError
from warden.wire import bounds, codec, large
from warden.wire.channel import Channel

VALUES = [
    None, 0, -1, 2**40, 1.5, "", "ascii", "é" * 7, "€uro", "😀x", b"", b"x" * 70000,
    [], {}, [[[]]], {"a": [1, {"b": None}], 5: "five"}, list(range(70000)),
    [{"k": i, "s": "x" * (i % 40)} for i in range(2000)],
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_native_and_python_walks_agree_and_decoding_matches(value):
    body = msgpack.packb(value, use_bin_type=True)
    assert bounds.decode_cost(body, 1 << 40) == bounds._py_cost(body, 1 << 40, bounds.MAX_DEPTH)
    assert bounds.decode_cost(body, 1 << 40) <= len(body) * bounds.COST_PER_BYTE
    assert codec.decode_body(body, 1 << 40) == value


@pytest.mark.parametrize("body", [b"", b"\x92\x01", b"\x01\x02", b"\xc1", b"\xd4\x01\x00",
                                  b"\xdd\xff\xff\xff\xff\x00", b"\x91" * 600 + b"\xc0"])
def test_malformed_or_deep_bodies_are_refused_alike(body):
    assert bounds.decode_cost(body, 1 << 40) == bounds._py_cost(body, 1 << 40, bounds.MAX_DEPTH)
    assert bounds.decode_cost(body, 1 << 40) < 0
    with pytest.raises(ProtocolError):
        codec.decode_body(body * 2000, 1 << 20)  # long enough to be walked


def test_a_body_of_empty_maps_is_refused_by_its_cost_not_decoded():
    n = 4 << 20
    body = b"\xdd" + struct.pack(">I", n) + b"\x80" * n
    budget = bounds.decode_budget(64 << 20)
    assert budget == 128 << 20
    with pytest.raises(ProtocolError, match="decode budget"):
        codec.decode_body(body, budget)
    reader = codec.FrameReader(budget=budget)
    reader.feed(struct.pack(">I", len(body)) + body)
    with pytest.raises(ProtocolError):
        reader.read()


def test_a_large_body_decodes_in_slices_to_the_same_value():
    value = [{"i": i, "b": b"y" * (i % 300)} for i in range(40000)]
    body = msgpack.packb(value, use_bin_type=True)
    assert len(body) > 2 * codec.DECODE_SLICE
    assert codec.decode_body(body) == value
    for bad in (body[:-1], body + b"\x00"):
        with pytest.raises(ProtocolError):
            codec.decode_body(bad)


def test_budget_follows_the_memory_limit_and_the_absolute_cap(monkeypatch):
    assert bounds.decode_budget(4 << 20) == bounds.DECODE_FLOOR
    assert bounds.decode_budget(256 << 20) == 512 << 20
    assert bounds.decode_budget(64 << 30) == bounds.DEFAULT_MAX_DECODE
    monkeypatch.setenv(bounds.ENV_MAX_DECODE, str(100 << 20))
    assert bounds.decode_budget(256 << 20) == 100 << 20
    assert bounds.decode_budget(256 << 20, cap=200 << 20) == 200 << 20
    monkeypatch.setenv(bounds.ENV_MAX_DECODE, "lots")
    with pytest.raises(ValueError, match=bounds.ENV_MAX_DECODE):
        bounds.decode_budget(1)


def test_a_sparse_or_oversized_data_file_is_refused_unread(tmp_path):
    with open(tmp_path / "sparse.bin", "wb") as f:
        f.truncate(8 << 20)
    with pytest.raises(ProtocolError, match="sparse"):
        large.read_large_file(tmp_path, "sparse.bin")
    (tmp_path / "big.bin").write_bytes(b"z" * 5000)
    with pytest.raises(PayloadTooLarge):
        large.read_large_file(tmp_path, "big.bin", limit=4096)
    assert large.read_large_file(tmp_path, "big.bin") == b"z" * 5000


def test_a_sealed_sparse_memfd_is_refused_and_closed():
    fd = os.memfd_create("sparse", os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, 16 << 20)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW)
    with pytest.raises(ProtocolError, match="sparse"):
        large.read_memfd(fd)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by the refusal


def test_a_channel_closes_descriptors_beyond_its_allowance_at_once():
    a, b = socket.socketpair()
    host = Channel(a, max_fds=1)
    r, w = os.pipe()
    try:
        before = len(os.listdir("/proc/self/fd"))
        b.sendmsg([struct.pack(">I", 100)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                               struct.pack("8i", *[r] * 8))])
        with pytest.raises(ProtocolError, match="descriptors"):
            host.recv_with_fds()
        assert host.abandoned
        assert len(os.listdir("/proc/self/fd")) <= before - 1  # its own socket closed too
    finally:
        host.close()
        b.close()
        os.close(r)
        os.close(w)
