"""Frames to and from a container's worker over the container's attached stdio.

The host writes frames to the container's stdin and reads them back from its stdout through the
engine's attach socket; stdout and stderr arrive multiplexed in one stream, and only stdout
carries frames. The worker's stderr is kept (its tail) for the report of its death.

No descriptors cross this link (the attach stream is a byte stream relayed by the engine), so
large payloads travel in frames only; each frame decodes within the sandbox's decode budget
(warden.wire.bounds), as on the native provider's channel.
"""

from __future__ import annotations

import select
import socket
import struct
import time

from warden.wire.codec import INCOMPLETE, FrameReader

__all__ = ["Link", "attach"]


class Link:
    """Frames over one container's attach socket: stdin is raw, and what comes back is
    Docker's multiplexed stream (8-byte header: stream type, 3 zero bytes, u32 length)."""

    _MUX = struct.Struct(">BxxxI")

    def __init__(self, sock: socket.socket, max_frame: int, budget: int | None = None) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.reader = FrameReader(max_frame, budget)
        self.max_frame = max_frame
        self._hdr = bytearray()
        self._stream = 0
        self._left = 0
        self.stderr = bytearray()
        self._keep: object = None

    def close(self) -> None:
        self.reader.drop()  # what the worker sent and nobody read goes with the link
        try:
            # The SDK's response holds the socket too, so close() alone may leave it open;
            # shut down, the engine stops streaming into it at once instead of blocking on a
            # full buffer (and holding the container while it does).
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # not connected any more
        try:
            self.sock.close()
        except OSError:
            pass  # already gone with the container: nothing to release

    def send(self, frame: bytes, deadline: float) -> None:
        view = memoryview(frame)
        while view:
            self._wait(select.POLLOUT, deadline)
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            view = view[n:]

    def _wait(self, events: int, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        p = select.poll()
        p.register(self.sock, events)
        if not p.poll(left * 1000):
            raise TimeoutError

    def recv(self, deadline: float) -> object:
        while True:
            msg = self.reader.read()
            if msg is not INCOMPLETE:
                return msg
            self._wait(select.POLLIN, deadline)
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise EOFError
            self._demux(data)

    def _demux(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._left == 0:
                need = 8 - len(self._hdr)
                self._hdr += view[:need]
                view = view[need:]
                if len(self._hdr) < 8:
                    return
                self._stream, self._left = self._MUX.unpack(self._hdr)
                self._hdr.clear()
                continue
            chunk = view[:self._left]
            view = view[len(chunk):]
            self._left -= len(chunk)
            if self._stream == 1:
                self.reader.feed(chunk)
            else:
                # The worker's stderr: kept (its tail) for the error message of a crash.
                self.stderr += chunk
                if len(self.stderr) > 16384:
                    del self.stderr[:-8192]


def attach(api, cid: str, max_frame: int, budget: int | None = None) -> Link:
    """A link to container ``cid``'s stdio (docker.APIClient ``api``); raises the SDK's
    APIError. Made before the container starts, so that nothing its worker writes is missed."""
    raw = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    link = Link(getattr(raw, "_sock", raw), max_frame, budget)
    link._keep = raw  # keeps the HTTP response, and with it the socket, alive
    return link
