"""Output streamed before a reply: ``{"id", "stream", "data"}`` frames of one request.

A request that asks for streaming (``exec`` with ``stream``) may be answered by any number of
stream frames and then its one reply, all with the request's id and in the order the worker
sent them; nothing of another request comes in between (the channel serves one request at a
time). Each stream frame is a frame like any other, so the frame cap and the decode budget of
warden.wire.bounds hold for it; on top of that the host (``StreamSink``) refuses, as a broken
or hostile worker:

- a frame whose keys are not exactly id, stream and data, a stream other than "stdout" or
  "stderr", or data that is not bytes;
- data over STREAM_CHUNK bytes in one frame (the worker never reads more at once);
- more bytes of a stream, summed over the request, than the cap the host asked for.

The data is handed to a callback and not kept, so the host's memory stays flat however long a
command prints; the cumulative cap bounds how long a worker can keep the host busy with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from warden.errors import ProtocolError

__all__ = ["DEFAULT_STREAM_CAP", "STREAMS", "STREAM_CHUNK", "StreamSink", "is_stream_frame",
           "stream_frame"]

STREAMS = ("stdout", "stderr")
# The most one stream frame carries: what the worker reads from a pipe at once.
STREAM_CHUNK = 64 << 10
# What an exec streams of each of stdout and stderr when the caller sets no cap.
DEFAULT_STREAM_CAP = 1 << 30
_KEYS = frozenset({"id", "stream", "data"})


def stream_frame(request_id: int, stream: str, data: bytes) -> dict[str, Any]:
    return {"id": request_id, "stream": stream, "data": data}


def is_stream_frame(msg: object) -> bool:
    """Whether ``msg`` is meant as a stream frame (a map with a "stream" key); whether it is
    a good one, StreamSink.take says."""
    return type(msg) is dict and "stream" in msg


class StreamSink:
    """The host's side of one streaming request: checks each frame and hands its data to the
    callback of its stream. A callback that raises gets no more data; the request is read to
    its reply all the same (so the channel stays in step) and the first such exception is
    raised by ``raise_pending`` afterwards."""

    def __init__(self, callbacks: dict[str, Callable[[bytes], object] | None],
                 caps: dict[str, int]) -> None:
        self._callbacks = dict(callbacks)
        self._caps = dict(caps)
        self.received = dict.fromkeys(STREAMS, 0)
        self.error: BaseException | None = None

    def take(self, frame: dict[Any, Any]) -> None:
        """One stream frame; ProtocolError when it breaks the rules of this module."""
        if set(frame) != _KEYS:
            raise ProtocolError("a stream frame must have exactly the keys id, stream and "
                                "data; the worker is broken or hostile")
        stream, data = frame["stream"], frame["data"]
        if stream not in STREAMS or type(stream) is not str:
            raise ProtocolError("a stream frame names a stream other than stdout or stderr; "
                                "the worker is broken or hostile")
        if type(data) is not bytes:
            raise ProtocolError("a stream frame's data is not bytes; the worker is broken or "
                                "hostile")
        if len(data) > STREAM_CHUNK:
            raise ProtocolError(f"a stream frame carries {len(data)} bytes, over the "
                                f"{STREAM_CHUNK} of one chunk; the worker is broken or hostile")
        total = self.received[stream] + len(data)
        if total > self._caps.get(stream, 0):
            raise ProtocolError(f"the worker streamed more than the {self._caps.get(stream, 0)} "
                                f"bytes of {stream} asked for; it is broken or hostile")
        self.received[stream] = total
        callback = self._callbacks.get(stream)
        if callback is None or self.error is not None or not data:
            return
        try:
            callback(data)
        except Exception as exc:  # re-raised by raise_pending once the reply is in
            self.error = exc

    def raise_pending(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err
