"""The frame codec (pure): round trips, any split of the stream, caps on both sides, garbage."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warden import PayloadTooLarge, ProtocolError
from warden.wire.codec import INCOMPLETE, FrameReader, decode_body, encode

# msgpack values that round-trip exactly (tuples come back as lists, so none are generated).
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=50) | st.binary(max_size=50))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=10) | st.integers(-1000, 1000), inner, max_size=5),
    max_leaves=30,
)
messages = st.fixed_dictionaries({"id": st.integers(0, 2**62), "op": st.text(max_size=10)},
                                 optional={"payload": values})


def drain(reader: FrameReader) -> list:
    """Everything the reader yields, with refusals recorded in stream order."""
    out = []
    while True:
        try:
            msg = reader.read()
        except PayloadTooLarge as exc:
            out.append(("too large", exc.size, getattr(exc, "request_id", None)))
            continue
        except ProtocolError:
            out.append(("garbage",))
            continue
        if msg is INCOMPLETE:
            return out
        out.append(msg)


def body_size(msg: object) -> int:
    return len(msgpack.packb(msg, use_bin_type=True))


# -- codec --------------------------------------------------------------------------------------


@given(values)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(value):
    frame = encode(value)
    (n,) = struct.unpack(">I", frame[:4])
    assert n == len(frame) - 4
    reader = FrameReader()
    reader.feed(frame)
    assert reader.read() == value
    assert reader.read() is INCOMPLETE
    assert reader.buffered == 0


@given(st.lists(messages, max_size=8), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_any_split_of_the_stream_gives_the_same_messages(msgs, data):
    stream = b"".join(encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    reader = FrameReader()
    got = []
    prev = 0
    for cut in cuts + [len(stream)]:
        reader.feed(stream[prev:cut])
        prev = cut
        got.extend(drain(reader))
    assert got == msgs


@given(st.lists(st.tuples(messages, st.booleans()), max_size=6), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_oversized_frames_are_skipped_and_the_stream_stays_usable(items, data):
    """Frames over the reader's cap (sent by a peer with a larger cap) are refused one by one,
    with their request id, and every frame under the cap still arrives, however the bytes are
    split."""
    limit = 64
    stream = b""
    expected = []
    for msg, big in items:
        msg = {"id": msg["id"], **msg}  # the protocol puts the id first; the reader peeks it
        if big:
            msg = dict(msg, payload=b"x" * 100)
        frame = encode(msg, limit=1 << 20)
        stream += frame
        size = len(frame) - 4
        if size > limit:
            expected.append(("too large", size, msg["id"]))
        else:
            expected.append(msg)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    reader = FrameReader(limit)
    got = []
    prev = 0
    for cut in cuts + [len(stream)]:
        reader.feed(stream[prev:cut])
        prev = cut
        got.extend(drain(reader))
    assert got == expected


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_frames_at_just_under_and_over_the_cap(delta):
    msg = {"id": 1, "op": "call", "payload": b"p" * 1000}
    size = body_size(msg)
    limit = size - delta  # delta -1: just under; 0: at; +1: one byte over
    if delta <= 0:
        frame = encode(msg, limit)
        reader = FrameReader(limit)
        reader.feed(frame)
        assert reader.read() == msg
    else:
        with pytest.raises(PayloadTooLarge) as info:
            encode(msg, limit)
        assert (info.value.size, info.value.limit) == (size, limit)
        assert info.value.direction == "outgoing"  # refused before anything was written
        reader = FrameReader(limit)
        reader.feed(encode(msg, size) + encode({"id": 2, "op": "ping"}, size))
        with pytest.raises(PayloadTooLarge) as info:
            reader.read()
        assert info.value.request_id == 1 and info.value.direction == "incoming"
        assert reader.read() == {"id": 2, "op": "ping"}


def test_oversized_body_is_not_buffered():
    """A peer announcing a huge frame cannot make the reader hold it in memory."""
    reader = FrameReader(1024)
    reader.feed(struct.pack(">I", 100 << 20) + msgpack.packb({"id": 9}) + b"\0" * 1000)
    with pytest.raises(PayloadTooLarge) as info:
        reader.read()
    assert info.value.request_id == 9
    for _ in range(99):  # 99 MiB more: still inside the announced 100 MiB body
        reader.feed(b"\0" * (1 << 20))
        assert reader.read() is INCOMPLETE
        assert reader.buffered == 0


@given(st.binary(max_size=200))
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_only_ever_raises_protocol_errors(blob):
    reader = FrameReader(256)
    reader.feed(blob)
    outcomes = drain(reader)  # drain() lets only ProtocolError and PayloadTooLarge through
    assert len(outcomes) <= len(blob) // 4
    assert reader.buffered < len(blob) + 1


@given(st.binary(max_size=100))
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_body_is_consumed_and_the_next_frame_decodes(tail):
    blob = b"\xc1" + tail  # 0xc1 is never valid msgpack
    reader = FrameReader()
    reader.feed(struct.pack(">I", len(blob)) + blob + encode({"id": 3, "op": "ping"}))
    with pytest.raises(ProtocolError):
        reader.read()
    assert reader.read() == {"id": 3, "op": "ping"}


@pytest.mark.parametrize("blob", [b"", b"\xc1", b"\x91", b"\x81\x80\x01", b"\x01\x02",
                                  b"\xd4\x05\x00", b"\xdd\xff\xff\xff\xff"])
def test_known_bad_bodies(blob):
    with pytest.raises(ProtocolError):
        decode_body(blob)


def test_unencodable_message_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode({"id": 1, "x": {1, 2}})
    with pytest.raises(ProtocolError):
        encode(2**70)
    assert decode_body(encode(["still", "fine"])[4:]) == ["still", "fine"]


# -- read_chunk ---------------------------------------------------------------------------------


chunk_items = st.lists(st.one_of(messages.map(lambda m: ("frame", m)),
                                  st.just(("big", None)), st.binary(min_size=1, max_size=8)
                                  .map(lambda b: ("garbage", b))), max_size=8)


@given(chunk_items, st.data())
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_read_chunk_is_feed_then_read(items, data):
    """read_chunk(data), with its shortcut for a chunk that is exactly one frame, yields the
    same messages, refusals and stream offsets as feed(data) then read(), however the stream
    is cut (cuts at frame boundaries included, where the shortcut applies)."""
    limit = 256
    frames, bounds = [], [0]
    for kind, value in items:
        if kind == "frame":
            frame = encode(value, limit=1 << 20)
        elif kind == "big":
            frame = encode({"id": 5, "payload": b"x" * 300}, limit=1 << 20)
        else:  # a well-framed body that is not msgpack
            frame = struct.pack(">I", len(value) + 1) + b"\xc1" + value
        frames.append(frame)
        bounds.append(bounds[-1] + len(frame))
    stream = b"".join(frames)
    cuts = data.draw(st.lists(st.sampled_from(bounds) | st.integers(0, len(stream)),
                              max_size=12))
    cuts = sorted(set(cuts) | {len(stream)})

    def run(use_chunk: bool) -> list:
        reader = FrameReader(limit)
        out, prev = [], 0
        for cut in cuts:
            chunk, prev = stream[prev:cut], cut
            first = True
            while True:
                try:
                    if first and use_chunk:
                        msg = reader.read_chunk(chunk)
                    else:
                        if first:
                            reader.feed(chunk)
                        msg = reader.read()
                except PayloadTooLarge as exc:
                    out.append(("too large", exc.size, exc.request_id))
                    first = False
                    continue
                except ProtocolError:
                    out.append(("garbage", reader.offset))
                    first = False
                    continue
                first = False
                if msg is INCOMPLETE:
                    break
                out.append((msg, reader.last_start, reader.last_end, reader.offset))
        return out

    assert run(True) == run(False)


def test_read_chunk_decodes_a_whole_frame_without_buffering_it():
    reader = FrameReader()
    frame = encode({"id": 1, "op": "x"})
    assert reader.read_chunk(frame) == {"id": 1, "op": "x"}
    assert (reader.last_start, reader.last_end, reader.offset) == (0, len(frame), len(frame))
    assert reader.buffered == 0
    assert reader.read_chunk(frame + frame[:3]) == {"id": 1, "op": "x"}  # the general path
    assert reader.buffered == 3
