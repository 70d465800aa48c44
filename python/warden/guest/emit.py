"""Frames a worker op sends before its reply: the stream frames of warden.wire.streams.

The worker binds ``sender`` to the request it is serving (``bound``); an op that streams
(``exec`` with ``stream``) calls ``emit``. A send blocks while the host's socket buffer is
full, so a command that prints faster than the host reads is slowed down, not buffered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from warden.wire.streams import STREAM_CHUNK, stream_frame

__all__ = ["bound", "emit"]

_send: Callable[[dict], None] | None = None
_request_id: int | None = None


@contextlib.contextmanager
def bound(request_id: int, send: Callable[[dict], None]) -> Iterator[None]:
    """While serving request ``request_id``, stream frames go out through ``send``."""
    global _send, _request_id
    _send, _request_id = send, request_id
    try:
        yield
    finally:
        _send, _request_id = None, None


def emit(stream: str, data: bytes) -> None:
    """Send ``data`` of ``stream`` ("stdout" or "stderr") in chunks of at most STREAM_CHUNK."""
    if _send is None or _request_id is None:
        raise RuntimeError("emit outside of a request")
    for at in range(0, len(data), STREAM_CHUNK):
        _send(stream_frame(_request_id, stream, bytes(data[at:at + STREAM_CHUNK])))
