"""The frame codec (pure) and the channel over a real unix socketpair."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warden import (
    PathEscapeError,
    PayloadTooLarge,
    PluginError,
    ProtocolError,
    TimeoutExceeded,
)
from warden.wire.ipc import (
    INCOMPLETE,
    Channel,
    ChannelClosed,
    FrameReader,
    decode_body,
    encode,
    error_from_reply,
    error_reply,
    make_memfd,
    memfd_ref,
    ok_reply,
    put_large,
    read_large_file,
    read_memfd,
    resolve_large,
)

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
        reader = FrameReader(limit)
        reader.feed(encode(msg, size) + encode({"id": 2, "op": "ping"}, size))
        with pytest.raises(PayloadTooLarge) as info:
            reader.read()
        assert info.value.request_id == 1
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


def test_error_replies_map_back():
    try:
        raise KeyError("k")
    except KeyError as exc:
        reply = error_reply(5, exc)
    err = error_from_reply(reply["error"])
    assert isinstance(err, PluginError)
    assert err.type == "KeyError" and "raise KeyError" in err.traceback
    too = error_from_reply(error_reply(6, PayloadTooLarge(10, 5), origin="warden")["error"])
    assert isinstance(too, PayloadTooLarge) and (too.size, too.limit) == (10, 5)
    assert isinstance(error_from_reply("nope"), ProtocolError)
    assert ok_reply(1, [1]) == {"id": 1, "ok": True, "result": [1]}


# -- large payloads -----------------------------------------------------------------------------


def test_memfd_round_trip_is_sealed_and_mapped():
    fd = make_memfd(b"abc" * 1000)
    with pytest.raises(PermissionError):
        os.write(fd, b"x")  # sealed: the sender cannot change it under the receiver
    view = read_memfd(os.dup(fd))
    assert bytes(view) == b"abc" * 1000
    os.close(fd)


def test_unsealed_or_foreign_fds_are_refused(tmp_path):
    fd = os.memfd_create("x")
    os.write(fd, b"data")
    with pytest.raises(ProtocolError, match="not sealed"):
        read_memfd(fd)
    path = tmp_path / "f"
    path.write_bytes(b"data")
    with pytest.raises(ProtocolError, match="not a sealable memfd"):
        read_memfd(os.open(path, os.O_RDONLY))
    with pytest.raises(PayloadTooLarge):
        read_memfd(make_memfd(b"x" * 100), limit=10)


def test_memfd_ref_resolves_bytes_and_values():
    ref, fd = memfd_ref({"rows": list(range(10))})
    ref2, fd2 = memfd_ref(b"raw", index=1)
    used: set[int] = set()
    assert resolve_large(ref, fds=[fd, fd2], used=used) == {"rows": list(range(10))}
    assert bytes(resolve_large(ref2, fds=[fd, fd2], used=used)) == b"raw"
    assert used == {0, 1}
    with pytest.raises(ProtocolError):
        resolve_large({"$fd": 3}, fds=[])
    assert resolve_large({"$fd": 0, "other": 1}, fds=[]) == {"$fd": 0, "other": 1}


def test_files_in_the_data_area(tmp_path):
    ref = put_large(b"B" * 5000, tmp_path)
    assert set(ref) == {"$file"}
    assert resolve_large(ref, data_dir=tmp_path) == b"B" * 5000
    ref = put_large({"a": [1, 2]}, tmp_path)
    assert resolve_large(ref, data_dir=tmp_path) == {"a": [1, 2]}
    with pytest.raises(PayloadTooLarge):
        read_large_file(tmp_path, ref["$file"], limit=3)


@pytest.mark.parametrize("relpath", ["/etc/passwd", "../x", "a/../../x", "", "a//b", "./a"])
def test_file_refs_cannot_leave_the_data_area(tmp_path, relpath):
    with pytest.raises(PathEscapeError):
        resolve_large({"$file": relpath}, data_dir=tmp_path)


def test_file_refs_do_not_follow_symlinks_or_open_fifos(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "link").symlink_to(secret)
    (data / "dirlink").symlink_to(tmp_path)
    os.mkfifo(data / "fifo")
    with pytest.raises(PathEscapeError):
        resolve_large({"$file": "link"}, data_dir=data)
    with pytest.raises(PathEscapeError):
        resolve_large({"$file": "dirlink/secret"}, data_dir=data)
    with pytest.raises(PathEscapeError, match="not a regular file"):
        resolve_large({"$file": "fifo"}, data_dir=data)


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


# -- channel ------------------------------------------------------------------------------------


@pytest.fixture(params=[0, None], ids=["sleeping", "spinning"])
def pair(request):
    """Channels that wait in the kernel at once, and ones that poll first (the default)."""
    a, b = socket.socketpair()
    ca = Channel(a, max_recv=4096, max_send=4096, spin_ns=request.param)
    cb = Channel(b, max_recv=4096, max_send=1 << 20, spin_ns=request.param)
    yield ca, cb
    ca.close()
    cb.close()


def test_channel_send_recv_and_sender_side_cap(pair):
    a, b = pair
    a.send({"id": 1, "op": "ping"})
    assert b.recv() == {"id": 1, "op": "ping"}
    with pytest.raises(PayloadTooLarge):
        a.send({"id": 2, "payload": b"x" * 5000})
    a.send({"id": 3, "op": "after"})
    assert b.recv() == {"id": 3, "op": "after"}


def test_channel_receiver_side_cap_keeps_the_stream(pair):
    a, b = pair
    b.send({"id": 7, "payload": b"x" * 100_000})  # b may send more than a accepts
    b.send({"id": 8, "op": "next"})
    with pytest.raises(PayloadTooLarge) as info:
        a.recv(deadline=time.monotonic() + 5)
    assert info.value.request_id == 7
    assert a.recv(deadline=time.monotonic() + 5) == {"id": 8, "op": "next"}


def test_channel_deadline_and_eof(pair):
    a, b = pair
    with pytest.raises(TimeoutExceeded):
        a.recv(deadline=time.monotonic() + 0.05)
    b.close()
    with pytest.raises(ChannelClosed):
        a.recv()


def test_fds_travel_with_their_frame(pair):
    a, b = pair
    fd = make_memfd(b"payload" * 10_000)
    a.send({"id": 1, "op": "first"})
    a.send({"id": 2, "op": "with fd"}, fds=[fd])
    a.send({"id": 3, "op": "third"})
    os.close(fd)
    assert b.recv_with_fds() == ({"id": 1, "op": "first"}, [])
    msg, fds = b.recv_with_fds()
    assert msg["id"] == 2 and len(fds) == 1
    assert bytes(read_memfd(fds[0])) == b"payload" * 10_000
    assert b.recv_with_fds() == ({"id": 3, "op": "third"}, [])


@pytest.mark.parametrize("sizes", [(10, 10, 10, 10), (300_000, 10, 300_000, 10),
                                   (10, 300_000, 10, 300_000), (200_000,) * 4])
def test_fds_stay_with_their_frames_under_any_mix_of_sizes(sizes):
    a, b = socket.socketpair()
    sender, receiver = Channel(a, max_send=1 << 20), Channel(b, max_recv=1 << 20)

    def send_all():
        for i, size in enumerate(sizes):
            fds = [make_memfd(str(i).encode())] if i % 2 else []
            sender.send({"id": i, "pad": b"p" * size}, fds=fds)
            for fd in fds:
                os.close(fd)

    t = threading.Thread(target=send_all)
    t.start()
    try:
        for i in range(len(sizes)):
            msg, fds = receiver.recv_with_fds(deadline=time.monotonic() + 10)
            assert msg["id"] == i
            if i % 2:
                assert [bytes(read_memfd(fd)) for fd in fds] == [str(i).encode()]
            else:
                assert fds == []
    finally:
        t.join()
        sender.close()
        receiver.close()


def test_request_abandons_the_channel_after_a_timeout(pair):
    """A late reply must never be taken for the answer to a later request."""
    a, b = pair

    def late_worker():
        msg = b.recv()
        time.sleep(0.2)
        b.send(ok_reply(msg["id"], "late"))

    t = threading.Thread(target=late_worker)
    t.start()
    with pytest.raises(TimeoutExceeded):
        a.call("call", deadline=time.monotonic() + 0.05, action="x", payload=None)
    t.join()
    assert a.abandoned
    with pytest.raises(ChannelClosed):
        a.call("ping")


def test_reply_with_the_wrong_id_is_refused(pair):
    a, b = pair

    def wrong_worker():
        msg = b.recv()
        b.send(ok_reply(msg["id"] + 1, "not yours"))

    t = threading.Thread(target=wrong_worker)
    t.start()
    with pytest.raises(ProtocolError, match="carried id"):
        a.call("ping", deadline=time.monotonic() + 5)
    t.join()
    assert a.abandoned


def test_a_send_that_times_out_abandons_the_channel(pair):
    _, b = pair
    big = Channel(socket.socket(fileno=os.dup(b.fileno())), max_send=16 << 20)
    try:
        with pytest.raises(TimeoutExceeded):
            big.send({"id": 1, "payload": b"x" * (8 << 20)}, deadline=time.monotonic() + 0.1)
        assert big.abandoned
        with pytest.raises(ChannelClosed):
            big.send({"id": 2})
    finally:
        big.close()


def test_using_a_closed_channel_raises_channel_closed(pair):
    a, b = pair
    a.close()
    with pytest.raises(ChannelClosed):
        b.send({"id": 1})  # a unix socket whose peer is closed refuses with EPIPE
    with pytest.raises(ChannelClosed):
        b.recv()


def test_a_shorter_deadline_after_longer_ones_still_bites():
    """A receive timeout left on the socket by calls with a long deadline is kept only while
    it ends before the current deadline: a call with a shorter one times out on time."""
    a, b = socket.socketpair()
    ca, cb = Channel(a, spin_ns=0), Channel(b, spin_ns=0)
    try:
        for i in range(5):
            cb.send({"id": i})
            assert ca.recv(deadline=time.monotonic() + 30) == {"id": i}
        t = time.monotonic()
        with pytest.raises(TimeoutExceeded):
            ca.recv(deadline=t + 0.2)
        assert time.monotonic() - t < 5  # bounded by 0.2 s, not by the 30 s left set
    finally:
        ca.close()
        cb.close()


def test_spinning_wait_reports_each_outcome():
    from warden import _core

    a, b = socket.socketpair()
    try:
        assert _core.wait_readable(a.fileno(), 1_000_000, 30) == 0  # nothing came
        b.send(b"x")
        assert _core.wait_readable(a.fileno(), 1_000_000, 1000) == 1  # there while spinning
        a.recv(1)
        threading.Timer(0.1, b.send, (b"y",)).start()
        assert _core.wait_readable(a.fileno(), 1_000, 5000) == 2  # came while asleep
        a.recv(1)
        b.close()
        assert _core.wait_readable(a.fileno(), 0, 1000) == 2  # a hang-up counts
    finally:
        a.close()


def test_a_signal_during_a_spinning_wait_runs_its_handler():
    """Python's signal handlers run while a channel waits in native code: a handler that
    raises ends the wait with its exception, one that returns lets the wait go on."""
    import signal

    a, b = socket.socketpair()
    ca, cb = Channel(a, spin_ns=50_000), Channel(b)
    seen = []

    def quiet(signum, frame):
        seen.append(signum)

    def loud(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, quiet)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        threading.Timer(0.3, cb.send, ({"id": 1},)).start()
        assert ca.recv(deadline=time.monotonic() + 10) == {"id": 1}
        assert seen == [signal.SIGALRM]
        signal.signal(signal.SIGALRM, loud)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        t = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            ca.recv(deadline=time.monotonic() + 10)
        assert time.monotonic() - t < 5  # ended by the handler, not by the deadline
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        ca.close()
        cb.close()
