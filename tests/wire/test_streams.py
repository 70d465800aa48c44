"""The host's checks of what a worker streams (warden.wire.streams) and of its process
replies (warden.wire.procs): exact shapes, per-chunk and cumulative bounds, and nothing but
ProtocolError out of any decoded value."""

from __future__ import annotations

import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from warden.errors import ProtocolError
from warden.wire.channel import Channel
from warden.wire.procs import parse_list, parse_read, parse_start, parse_written
from warden.wire.streams import STREAM_CHUNK, StreamSink, stream_frame


def test_the_sink_hands_data_to_its_stream_and_counts_it():
    got: list[tuple[str, bytes]] = []
    sink = StreamSink({"stdout": lambda d: got.append(("o", d)), "stderr": None},
                      {"stdout": 10, "stderr": 10})
    sink.take(stream_frame(1, "stdout", b"abc"))
    sink.take(stream_frame(1, "stderr", b"zz"))
    assert got == [("o", b"abc")] and sink.received == {"stdout": 3, "stderr": 2}
    sink.take(stream_frame(1, "stdout", b"x" * 7))
    with pytest.raises(ProtocolError, match="more than the 10"):
        sink.take(stream_frame(1, "stdout", b"y"))


def test_a_raising_callback_is_kept_for_after_the_reply():
    calls = []

    def bad(d: bytes) -> None:
        calls.append(d)
        raise ValueError("mine")

    sink = StreamSink({"stdout": bad}, {"stdout": 100})
    sink.take(stream_frame(1, "stdout", b"a"))
    sink.take(stream_frame(1, "stdout", b"b"))
    assert calls == [b"a"]
    with pytest.raises(ValueError, match="mine"):
        sink.raise_pending()
    sink.raise_pending()  # once


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8) | st.sampled_from(["stdout", "stderr", "id", "stream", "data"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "stream", "data", "chunks", "next", "lost", "exit", "pid",
                         "started", "argv", "cpu", "written", "closed", "exit_code",
                         "signal"]), inner, max_size=6),
    max_leaves=20)


@given(values)
def test_any_value_is_taken_or_refused_with_protocol_error(value):
    sink = StreamSink({"stdout": lambda d: None, "stderr": lambda d: None},
                      {"stdout": 4, "stderr": 4})
    for parse in (lambda v: sink.take(v) if isinstance(v, dict) else None,
                  lambda v: parse_read(v, 0, STREAM_CHUNK), parse_list, parse_start,
                  lambda v: parse_written(v, 4)):
        try:
            parse(value)
        except ProtocolError:
            pass


@pytest.mark.parametrize("reply, why", [
    ({"chunks": [["stdout", b"x" * (STREAM_CHUNK + 1)]], "next": STREAM_CHUNK + 1, "lost": 0,
      "exit": None}, "chunk over"),
    ({"chunks": [["stdout", b"ab"]], "next": 5, "lost": 0, "exit": None}, "moves its offset"),
    ({"chunks": [["stdin", b"ab"]], "next": 2, "lost": 0, "exit": None}, "not \\[stdout"),
    ({"chunks": [["stdout", b"a" * 40000], ["stderr", b"b" * 40000]], "next": 80000,
      "lost": 0, "exit": None}, "over the 65536"),
    ({"chunks": [], "next": 0, "lost": 0, "exit": {"exit_code": 1, "signal": 9, "cpu": 0}},
     "both or neither"),
])
def test_forged_process_reads_are_refused(reply, why):
    with pytest.raises(ProtocolError, match=why):
        parse_read(reply, 0, STREAM_CHUNK)


def test_a_channel_gives_stream_frames_to_on_stream_and_then_returns_the_reply():
    host, worker = socket.socketpair()
    hc, wc = Channel(host), Channel(worker)
    seen: list[bytes] = []

    def serve() -> None:
        msg = wc.recv()
        assert isinstance(msg, dict)
        for part in (b"a", b"b"):
            wc.send(stream_frame(msg["id"], "stdout", part))
        wc.send({"id": msg["id"], "ok": True, "result": 7})

    t = threading.Thread(target=serve)
    t.start()
    sink = StreamSink({"stdout": seen.append}, {"stdout": 10})
    assert hc.call("exec", on_stream=sink.take) == 7
    t.join()
    assert seen == [b"a", b"b"]
    hc.close()
    wc.close()


def test_a_channel_without_on_stream_refuses_a_stream_frame():
    host, worker = socket.socketpair()
    hc, wc = Channel(host), Channel(worker)

    def serve() -> None:
        msg = wc.recv()
        assert isinstance(msg, dict)
        wc.send(stream_frame(msg["id"], "stdout", b"a"))

    t = threading.Thread(target=serve)
    t.start()
    with pytest.raises(ProtocolError):
        hc.call("exec")
    t.join()
    assert hc.abandoned is not None
    hc.close()
    wc.close()
