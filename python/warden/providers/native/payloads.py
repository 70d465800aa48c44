"""Requests with a large payload: the payload goes beside the frame as a sealed memfd
(warden.wire.large), which the worker maps read-only.

Bytes over INLINE_MAX go so. The memfd's pages are charged to the host, which wrote them, not
to the sandbox's memory limit. Over the frame cap the handler gets the mapping itself (a
read-only memoryview) and nothing of the payload is copied inside the sandbox; below it, the
worker hands the handler bytes, as an inline payload would arrive, in one copy instead of two
(the frame's buffer and the bytes msgpack decodes from it). Any other value over the frame
cap goes msgpack-encoded the same way.
"""

from __future__ import annotations

import os
from typing import Any

from warden.errors import PayloadTooLarge
from warden.wire import large
from warden.wire.channel import Channel

__all__ = ["FIELDS", "INLINE_MAX", "call"]

# The request fields that carry a caller's payload (ops call, call_fn and batch).
FIELDS = ("payload", "items")
# Bytes payloads above this go beside the frame.
INLINE_MAX = 1 << 20


def call(chan: Channel, op: str, args: dict[str, Any], **kw: Any) -> object:
    """``chan.call(op, **kw, **args)``, its payload beside the frame when it does not fit."""
    field = next((f for f in FIELDS if f in args), None)
    value = args.get(field) if field is not None else None
    if field is None or not (isinstance(value, (bytes, bytearray, memoryview))
                             and memoryview(value).nbytes > INLINE_MAX):
        try:
            return chan.call(op, **kw, **args)
        except PayloadTooLarge as exc:
            # Refused before a byte was written: the channel is still in step.
            if exc.direction != "outgoing" or field is None:
                raise
    assert field is not None
    ref, fd = large.memfd_ref(value)
    try:
        return chan.call(op, fds=[fd], **kw, **{**args, field: ref})
    finally:
        os.close(fd)
