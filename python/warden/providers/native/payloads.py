"""Requests whose payload is too large for a frame: the payload goes beside it as a sealed
memfd (warden.wire.large), which the worker maps read-only.

Bytes go as they are, so the handler reads the host's pages through the mapping and nothing
of them is copied inside the sandbox; the memfd's pages are charged to the host, which wrote
them, not to the sandbox's memory limit. Any other value over the frame cap goes
msgpack-encoded the same way.
"""

from __future__ import annotations

import os
from typing import Any

from warden.errors import PayloadTooLarge
from warden.wire import large
from warden.wire.channel import Channel

__all__ = ["FIELDS", "call"]

# The request fields that carry a caller's payload (ops call, call_fn and batch).
FIELDS = ("payload", "items")
# Room in a frame for the request's other fields beside its payload.
_HEADROOM = 64 << 10


def call(chan: Channel, op: str, args: dict[str, Any], **kw: Any) -> object:
    """``chan.call(op, **kw, **args)``, its payload beside the frame when it does not fit."""
    field = next((f for f in FIELDS if f in args), None)
    value = args.get(field) if field is not None else None
    if field is None or not (isinstance(value, (bytes, bytearray, memoryview))
                             and memoryview(value).nbytes > chan.max_send - _HEADROOM):
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
