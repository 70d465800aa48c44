"""A channel: frames over one connected unix stream socket, used by host and worker alike.

The frames are warden.wire.codec's; a request is answered by the reply with its id
(warden.wire.replies), and payloads too large for a frame come beside it
(warden.wire.large). A ``Channel`` owns the socket I/O and is not thread-safe: one caller at
a time per channel.
"""

from __future__ import annotations

import itertools
import math
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

try:
    from warden._core import wait_readable as _wait_readable
except ImportError:
    # The worker inside a container whose Python cannot load this host's native module:
    # its channel waits without spinning first.
    _wait_readable = None  # type: ignore[assignment]

from warden.errors import CallFailed, PayloadTooLarge, ProtocolError, TimeoutExceeded
from warden.wire.codec import (
    DEFAULT_MAX_FRAME,
    INCOMPLETE,
    FrameReader,
    check_limit,
    frame_header,
    new_packer,
    pack,
)
from warden.wire.large import DEFAULT_MAX_LARGE, is_large_ref, resolve_large
from warden.wire.replies import error_from_reply, parse_error
from warden.wire.streams import is_stream_frame

__all__ = ["MAX_FDS_PER_FRAME", "SPIN_BACKOFF", "SPIN_NS", "Channel", "ChannelClosed"]

MAX_FDS_PER_FRAME = 16
_SMALL_SEND = 64 << 10
# Reads go into a reused scratch buffer: recv(n) would allocate n bytes per call, and above
# glibc's mmap threshold (128 KiB) that is an mmap/munmap pair and fresh page faults per read.
_RECV_CHUNK = 64 << 10
_RECV_MAX_CHUNK = 4 << 20
_INT_SIZE = struct.calcsize("i")
_MSG_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)


def _default_spin_ns() -> int:
    """How long a channel polls for its peer's next frame before it sleeps (cpp/ipc/wait.h
    says why): WARDEN_SPIN_US microseconds, 50 by default, none with a single CPU (the
    peer could not run meanwhile) or without the native module."""
    env = os.environ.get("WARDEN_SPIN_US")
    try:
        us = 50 if env is None else int(env)
    except ValueError:
        raise ValueError(f"WARDEN_SPIN_US must be a whole number of microseconds, got "
                         f"{env!r}") from None
    if us < 0 or us > 1_000_000:
        raise ValueError(f"WARDEN_SPIN_US must be between 0 and 1000000, got {us}")
    if _wait_readable is None or len(os.sched_getaffinity(0)) < 2:
        return 0
    return us * 1000


# What _core.wait_readable answers (cpp/ipc/wait.h, cpp/bindings/ipc.cc).
_WAIT_TIMED_OUT, _WAIT_SPUN, _WAIT_SLEPT, _WAIT_INTERRUPTED = 0, 1, 2, 3

SPIN_NS = _default_spin_ns()
# After a wait that outlasted the spin, this many waits sleep at once: a peer that answers
# slowly costs one spin window in every SPIN_BACKOFF + 1 waits, not one in each.
SPIN_BACKOFF = 16


class ChannelClosed(CallFailed):
    """The peer closed the channel, or the channel was abandoned after a failed request."""


class Channel:
    """Frames over one connected socket, used by host and worker alike.

    Blocking I/O; a ``deadline`` (a ``time.monotonic()`` value) bounds a wait with poll(2).
    ``request``/``call`` send a request and wait for the reply with the same id; after a
    timeout or a broken reply the channel is abandoned (every later use raises ChannelClosed),
    so a late reply can never be taken for the answer to a later request. A PayloadTooLarge
    either way leaves the channel usable.
    """

    def __init__(self, sock: socket.socket | int, *, max_send: int = DEFAULT_MAX_FRAME,
                 max_recv: int = DEFAULT_MAX_FRAME, accept_fds: bool = True,
                 max_large: int = DEFAULT_MAX_LARGE, spin_ns: int | None = None,
                 budget: int | None = None, max_fds: int = MAX_FDS_PER_FRAME) -> None:
        if isinstance(sock, int):
            sock = socket.socket(fileno=sock)
        if sock.family != socket.AF_UNIX and accept_fds:
            accept_fds = False
        sock.setblocking(True)
        self._sock = sock
        self._fd = sock.fileno()
        self.max_send = check_limit("max_send", max_send)
        self.max_large = max_large if budget is None else min(max_large, budget)
        self.budget = budget
        if not 0 <= max_fds <= MAX_FDS_PER_FRAME:
            raise ValueError(f"max_fds must be between 0 and {MAX_FDS_PER_FRAME}, got {max_fds}")
        self.max_fds = max_fds
        # Room for one descriptor more than allowed: a peer that sends more is then seen
        # (MSG_CTRUNC), and the kernel closes what did not fit.
        self._ancbuf = socket.CMSG_SPACE((max_fds + 1) * _INT_SIZE)
        self.accept_fds = accept_fds
        self._reader = FrameReader(max_recv, budget)
        self._packer = new_packer()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        # (chunk start, chunk end, fds) for every recvmsg that brought fds.
        self._pending_fds: list[tuple[int, int, list[int]]] = []
        self._ids = itertools.count(1)
        self._abandoned: str | None = None
        self._rcvtimeo = 0  # SO_RCVTIMEO now set on the socket, in microseconds
        self._scratch = bytearray(_RECV_CHUNK)
        self._scratch_view = memoryview(self._scratch)
        self.spin_ns = SPIN_NS if spin_ns is None else spin_ns
        self._spin_skip = 0  # waits left that sleep at once (SPIN_BACKOFF)

    @property
    def max_recv(self) -> int:
        return self._reader.limit

    def fileno(self) -> int:
        return self._fd

    @property
    def abandoned(self) -> str | None:
        """Why the channel may no longer be used, or None."""
        return self._abandoned

    def close(self) -> None:
        self._release()

    def _release(self) -> None:
        """Close the socket, the descriptors received and not handed out, and drop what is
        buffered."""
        pending, self._pending_fds = self._pending_fds, []
        for _, _, fds in pending:
            _close_all(fds)
        self._reader.drop()
        self._sock.close()

    def __enter__(self) -> Channel:  # not Self: that needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def abandon(self, why: str) -> None:
        """Give the channel up: nothing the peer sent before can answer a later request.
        Its socket and descriptors are released now, not at close()."""
        self._abandoned = why
        self._release()

    def _check_usable(self) -> None:
        if self._abandoned is not None:
            raise ChannelClosed(f"channel was abandoned: {self._abandoned}; replace the worker")

    # -- sending ------------------------------------------------------------------------------

    def send(self, msg: object, fds: Sequence[int] = (), deadline: float | None = None) -> None:
        """Send one frame (and ``fds`` with it). Raises PayloadTooLarge before anything is
        written when the body is over ``max_send``."""
        self._check_usable()
        body = pack(self._packer, msg)
        n = len(body)
        if n > self.max_send:
            raise PayloadTooLarge(n, self.max_send, what="outgoing frame",
                                  direction="outgoing")
        header = frame_header(n)
        try:
            if fds or n > _SMALL_SEND:
                self._send_buffers([memoryview(header), memoryview(body)], fds, deadline)
            elif deadline is None:
                self._sock.sendall(header + body, _MSG_FLAGS)
            else:
                # A small frame almost always fits the socket's buffer at once: one send(2),
                # and the deadline-bound loop only for what did not fit.
                frame = header + body
                try:
                    sent = self._sock.send(frame, _MSG_FLAGS | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
                if sent < len(frame):
                    self._send_buffers([memoryview(frame)[sent:]], (), deadline)
        except TimeoutExceeded:
            # Part of the frame may be out: the stream can no longer be trusted to be in step.
            self.abandon("a send timed out part-way through a frame")
            raise
        except OSError as exc:
            raise ChannelClosed(f"cannot send on channel fd {self._fd}: {exc.strerror}; the "
                                "peer is gone") from exc

    def _send_buffers(self, bufs: list[memoryview], fds: Sequence[int],
                      deadline: float | None) -> None:
        if len(fds) > MAX_FDS_PER_FRAME:
            raise ValueError(f"a frame carries at most {MAX_FDS_PER_FRAME} fds, got {len(fds)}")
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] \
            if fds else []
        flags = _MSG_FLAGS | (socket.MSG_DONTWAIT if deadline is not None else 0)
        while bufs:
            # With a deadline the send is tried first and waited for only when the socket's
            # buffer is full: the common case, room in the buffer, then costs no poll(2).
            try:
                sent = self._sock.sendmsg(bufs, anc, flags)
            except BlockingIOError:
                self._wait(select.POLLOUT, deadline, "sending a frame")
                continue
            # The fds ride on the first byte: once anything went out, they went with it.
            anc = []
            while sent and bufs:
                if sent >= len(bufs[0]):
                    sent -= len(bufs[0])
                    bufs.pop(0)
                else:
                    bufs[0] = bufs[0][sent:]
                    sent = 0

    def _wait(self, events: int, deadline: float | None, what: str) -> None:
        """Wait until the socket is ready for ``events``; without a deadline, for as long as
        it takes."""
        poller = select.poll()
        poller.register(self._fd, events)
        if deadline is None:
            poller.poll()
            return
        remaining = deadline - time.monotonic()
        if remaining > 0 and poller.poll(math.ceil(remaining * 1000)):
            return
        raise TimeoutExceeded(f"no progress {what} on channel fd {self._fd} before the deadline")

    # -- receiving ----------------------------------------------------------------------------

    def recv(self, deadline: float | None = None) -> object:
        """Next message; fds that came with it are closed (use recv_with_fds to keep them)."""
        msg, fds = self.recv_with_fds(deadline)
        if fds:
            _close_all(fds)
        return msg

    def recv_with_fds(self, deadline: float | None = None) -> tuple[object, list[int]]:
        """Next message and the fds that were sent with it (the caller owns them)."""
        self._check_usable()
        reader = self._reader
        msg = reader.read() if reader.buffered else INCOMPLETE
        retry = False
        while msg is INCOMPLETE:
            msg = self._fill(deadline, retry)
            retry = True
        if self._pending_fds:
            return msg, self._claim_fds(reader.last_start, reader.last_end)
        return msg, []

    def _claim_fds(self, start: int, end: int) -> list[int]:
        """The fds sent with the frame at [start, end).

        A unix stream socket hands over fds with the recvmsg that touches the first byte of
        the skb they were sent with, and stops reading after that skb; earlier skbs can be
        glued in front of it (unix(7), net/unix/af_unix.c). The sender starts every frame
        with its own sendmsg, so the fds of a chunk [a, b) belong to the one frame that
        starts inside the chunk and ends at or after its end."""
        mine: list[int] = []
        keep = []
        for a, b, fds in self._pending_fds:
            if a <= start < b <= end and not mine:
                mine = fds
            elif b <= start:
                # Sent with an earlier frame that was refused or not decoded.
                _close_all(fds)
            else:
                keep.append((a, b, fds))
        self._pending_fds = keep
        return mine

    def _set_rcvtimeo(self, seconds: float, exact: bool = True) -> None:
        # 0 means "no timeout" to the kernel; a positive remainder is rounded up to a
        # microsecond so that it never becomes 0.
        usec = 0 if seconds <= 0 else max(1, math.ceil(seconds * 1e6))
        if usec == self._rcvtimeo:
            return
        if not exact and 0 < self._rcvtimeo <= usec and self._rcvtimeo >= usec >> 1:
            # A timeout already set that ends before the deadline, and not long before it,
            # is kept: the read wakes no later than the deadline, and if it wakes early the
            # next read sets the exact remainder. Calls with the same timeout then cost no
            # setsockopt(2) each.
            return
        if not exact and usec > 1000:
            # Set a little short of the deadline, so that the next calls' remainders, a
            # little smaller each, still find it in range.
            usec -= usec >> 4
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                              struct.pack("ll", usec // 1_000_000, usec % 1_000_000))
        self._rcvtimeo = usec

    def _fill(self, deadline: float | None, retry: bool = False) -> object:
        """Read once from the socket; the next message if that completed one, else
        INCOMPLETE. ``retry``: an earlier read of this wait came back without one."""
        reader = self._reader
        wanted = reader.wanted()
        if wanted <= _RECV_CHUNK:
            view = self._scratch_view
        else:
            # A large frame: one temporary buffer per read, sized to what the frame still needs.
            view = memoryview(bytearray(min(wanted, _RECV_MAX_CHUNK)))
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutExceeded(f"no reply on channel fd {self._fd} before the deadline")
        if self.spin_ns and not self._spin_skip:
            # Poll for the frame without sleeping for a moment, then sleep until it comes
            # or the deadline passes; the read below then never blocks.
            got = _wait_readable(self._fd, self.spin_ns,
                                 -1 if deadline is None else math.ceil(remaining * 1000))
            if got == _WAIT_TIMED_OUT:
                if deadline is not None and deadline - time.monotonic() <= 0:
                    raise TimeoutExceeded(
                        f"no reply on channel fd {self._fd} before the deadline")
                return INCOMPLETE
            if got == _WAIT_SLEPT:
                self._spin_skip = SPIN_BACKOFF
            elif got == _WAIT_INTERRUPTED:
                return INCOMPLETE  # a signal's handlers ran: wait again for what is left
        else:
            if self._spin_skip:
                self._spin_skip -= 1
            if deadline is not None:
                # The kernel's receive timeout bounds the blocking read itself: one system
                # call per read instead of poll(2) and then recvmsg(2).
                self._set_rcvtimeo(remaining, exact=retry)
            elif self._rcvtimeo:
                self._set_rcvtimeo(0.0)
        try:
            if self.accept_fds:
                n, anc, flags, _ = self._sock.recvmsg_into([view], self._ancbuf,
                                                           socket.MSG_CMSG_CLOEXEC)
                if anc or flags & socket.MSG_CTRUNC:
                    self._take_fds(_fds_from_ancillary(anc), n, flags)
            else:
                n = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            # SO_RCVTIMEO ran out (EAGAIN), or a signal came: the deadline decides.
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise TimeoutExceeded(
                    f"no reply on channel fd {self._fd} before the deadline") from None
            return INCOMPLETE
        except OSError as exc:
            raise ChannelClosed(f"cannot read channel fd {self._fd}: {exc.strerror}; the peer "
                                "is gone") from exc
        if not n:
            where = " in the middle of a frame" if reader.buffered else ""
            raise ChannelClosed(f"peer closed the channel{where}")
        return reader.read_chunk(view[:n])

    def _take_fds(self, fds: list[int], n: int, flags: int) -> None:
        """Keep the descriptors of one read for the frame they came with, or, when the peer
        sent more than a frame may carry, close them at once and give the channel up. (The
        buffer has room for one more than allowed, so such a peer is always seen; a cut
        without that many is this process's full descriptor table, and the frame comes
        without its descriptors.)"""
        held = sum(len(f) for _, _, f in self._pending_fds) + len(fds)
        if held > self.max_fds:
            _close_all(fds)
            self.abandon(f"the peer sent {held} descriptors, over the {self.max_fds} a frame "
                         "may carry")
            raise ProtocolError(f"the peer sent {held} descriptors for one frame; a frame "
                                f"carries at most {self.max_fds}: it is broken or hostile "
                                "and the channel was closed")
        if fds and n and not flags & socket.MSG_CTRUNC:
            start = self._reader.offset
            self._pending_fds.append((start, start + n, fds))
        else:
            _close_all(fds)

    # -- request / reply ----------------------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    def request(self, msg: dict[str, Any], *, deadline: float | None = None,
                fds: Sequence[int] = (), on_stream: Callable[[dict[str, Any]], None] | None = None,
                ) -> tuple[dict[str, Any], list[int]]:
        """Send ``msg`` (its "id" is set here) and return ``(reply, fds)`` for that id.
        With ``on_stream``, stream frames of that id before the reply (warden.wire.streams)
        go to it; one that it refuses (ProtocolError) gives the channel up."""
        request_id = msg["id"] = next(self._ids)
        self.send(msg, fds, deadline)
        try:
            reply, rfds = self.recv_with_fds(deadline)
            while on_stream is not None and is_stream_frame(reply) and not rfds \
                    and cast("dict[str, Any]", reply).get("id") == request_id:
                on_stream(cast("dict[str, Any]", reply))
                reply, rfds = self.recv_with_fds(deadline)
        except PayloadTooLarge as exc:
            # The peer's own send cap refuses a reply over it: one that came anyway is a
            # broken or hostile peer, and what it sent after it cannot be trusted in step.
            self.abandon(f"the reply to request {request_id} was over the receive cap")
            raise ProtocolError(f"the reply to request {request_id} ({msg.get('op')}) is a "
                                f"frame of {exc.size} bytes, over the cap of {exc.limit}; the "
                                "peer's own cap refuses such a reply, so it is broken or "
                                "hostile and the channel was closed") from exc
        except TimeoutExceeded:
            self.abandon(f"request {request_id} ({msg.get('op')}) timed out")
            raise
        except (ProtocolError, ChannelClosed) as exc:
            self.abandon(f"request {request_id} ({msg.get('op')}) failed: {exc}")
            raise
        except BaseException:
            # Interrupted (KeyboardInterrupt, a signal handler's exception) while the reply
            # was on its way: it may still come, and must not answer a later request.
            self.abandon(f"request {request_id} ({msg.get('op')}) was interrupted")
            raise
        if type(reply) is not dict or reply.get("id") != request_id:
            _close_all(rfds)
            got = reply.get("id") if type(reply) is dict else type(reply).__name__
            self.abandon(f"reply to request {request_id} carried id {got!r}")
            raise ProtocolError(f"reply to request {request_id} carried id {got!r}; the worker "
                                "is out of step and will be replaced")
        return reply, rfds

    def call(self, op: str, *, deadline: float | None = None, fds: Sequence[int] = (),
             data_dir: str | os.PathLike[str] | None = None,
             on_stream: Callable[[dict[str, Any]], None] | None = None, **fields: Any) -> object:
        """Make one request and return its result, resolving a large-payload reference in
        it; an error reply raises (PluginError, or PayloadTooLarge from the worker)."""
        msg = {"id": 0, "op": op}
        msg.update(fields)
        reply, rfds = self.request(msg, deadline=deadline, fds=fds, on_stream=on_stream)
        used: set[int] = set()
        result = reply.get("result")
        if data_dir is None and isinstance(result, dict) and is_large_ref(result) \
                and "$file" in result:
            # Code in the sandbox answered with a file where there is no data area: its
            # mistake, in a reply that was read whole, so the worker stays.
            _close_all(rfds)
            raise ProtocolError("a {'$file'} payload arrived but this side has no data "
                                "directory")
        try:
            if reply.get("ok") is True:
                return resolve_large(result, fds=rfds, data_dir=data_dir,
                                     limit=self.max_large, used=used, budget=self.budget,
                                     deadline=deadline)
            if reply.get("ok") is not False:
                raise ProtocolError(f"reply to request {reply['id']} has no boolean 'ok'")
            parse_error(reply.get("error"))  # ProtocolError when it is not an error map
        except (ProtocolError, PayloadTooLarge) as exc:
            # A reply or its payload that this side refused: the peer is to be replaced.
            self.abandon(f"the reply to request {reply['id']} was refused: {exc}")
            raise
        except TimeoutExceeded:
            # A pipe payload that did not arrive in time: the peer is still writing it.
            self.abandon(f"the payload of the reply to request {reply['id']} timed out")
            raise
        finally:
            _close_all([fd for i, fd in enumerate(rfds) if i not in used])
        raise error_from_reply(reply.get("error"))


def _fds_from_ancillary(anc: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % _INT_SIZE
            fds.extend(struct.unpack(f"{usable // _INT_SIZE}i", data[:usable]))
    return fds


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass  # already closed: nothing left to release
