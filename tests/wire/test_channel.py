"""The channel over a real unix socketpair: caps, deadlines, fds with their frames, requests
that time out or get the wrong reply, and the spinning wait."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from warden import PayloadTooLarge, ProtocolError, TimeoutExceeded
from warden.wire.channel import Channel, ChannelClosed
from warden.wire.large import make_memfd, read_memfd
from warden.wire.replies import ok_reply


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

    refused = []

    def late_worker():
        msg = b.recv()
        time.sleep(0.2)
        try:
            b.send(ok_reply(msg["id"], "late"))
        except ChannelClosed:
            refused.append(True)

    t = threading.Thread(target=late_worker)
    t.start()
    with pytest.raises(TimeoutExceeded):
        a.call("call", deadline=time.monotonic() + 0.05, action="x", payload=None)
    t.join()
    assert a.abandoned
    # The host's end was closed at the timeout, not at close(): the late reply had nowhere to go.
    assert refused == [True]
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


def test_a_request_interrupted_before_its_reply_gives_the_channel_up():
    """A KeyboardInterrupt while a request waits: the late reply must never answer the next
    request, so the channel is abandoned, not left out of step."""
    import signal

    a, b = socket.socketpair()
    ca, cb = Channel(a), Channel(b)

    def loud(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, loud)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            ca.request({"op": "slow"}, deadline=time.monotonic() + 10)
        first = cb.recv(deadline=time.monotonic() + 5)
        assert ca.abandoned is not None
        # The late reply finds the channel closed: it can answer nothing.
        with pytest.raises(ChannelClosed):
            cb.send({"id": first["id"], "ok": True, "result": "late"})
        with pytest.raises(ChannelClosed):
            ca.request({"op": "next"}, deadline=time.monotonic() + 5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        ca.close()
        cb.close()
