"""Credential injection: a tunnel (CONNECT or SOCKS5) to a host named in
``NetworkPolicy.inject`` is not relayed blind. warden reads the one request in it, sets the
host's headers on it, and forwards it, so that the secret lives in warden's process alone.

A tunnel that starts with a TLS handshake is ended at the proxy with a certificate from the
sandbox's own CA (warden.host.net.tls) and opened again to the host, whose certificate is
verified; one that starts otherwise is read as plain HTTP. Anything but one HTTP/1.x request
whose Host header names the tunnel's target is refused. As in forwarding, a request goes out
with ``Connection: close``: one request per tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from warden.host.net import http, tls
from warden.host.net.proxy import CHUNK, DIAL_TIMEOUT_S, HEAD_TIMEOUT_S, Stream, pump

if TYPE_CHECKING:
    from warden.host.net.egress import Attachment, Record

__all__ = ["serve"]

Read = Callable[[int], Awaitable[bytes]]
Write = Callable[[bytes], Awaitable[None]]
_TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a handshake (RFC 8446, 5.1)


class _Buffered:
    """A read function with what was read ahead of the caller kept for the next read."""

    def __init__(self, read: Read, pending: bytes = b"") -> None:
        self._read = read
        self.pending = pending

    async def read(self, n: int) -> bytes:
        if self.pending:
            out, self.pending = self.pending[:n], self.pending[n:]
            return out
        return await self._read(n)

    async def head(self) -> bytes:
        """The request head (without its blank line); what follows it stays pending."""
        buf = self.pending
        self.pending = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > http.MAX_HEAD:
                raise http.BadRequest("request head too large", 431)
            data = await self._read(CHUNK)
            if not data:
                raise http.BadRequest("the tunnel ended before a request head")
            buf += data
        head, _, self.pending = buf.partition(b"\r\n\r\n")
        if len(head) > http.MAX_HEAD:
            raise http.BadRequest("request head too large", 431)
        return head


def _writer(w: asyncio.StreamWriter) -> Write:
    async def write(data: bytes) -> None:
        w.write(data)
        await w.drain()
    return write


async def serve(att: Attachment, rec: Record, inside: Stream, outside: Stream,
                target: http.Target, headers: Mapping[str, str], pending: bytes = b"") -> None:
    """Serve the one request of a tunnel to ``target`` with ``headers`` set, then close it;
    ``pending`` is what was read of the tunnel before."""
    try:
        await _serve(att, rec, inside, outside, target, headers, pending)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
        pass
    finally:
        outside[1].close()
        rec.close()


async def _serve(att: Attachment, rec: Record, inside: Stream, outside: Stream,
                 target: http.Target, headers: Mapping[str, str], pending: bytes) -> None:
    first = pending or await asyncio.wait_for(inside[0].readexactly(1), HEAD_TIMEOUT_S)
    sb_read: Read = inside[0].read
    up_read: Read = outside[0].read
    sb_write, up_write = _writer(inside[1]), _writer(outside[1])
    pending, default_port, sb_tls = first, 80, None
    if first[0] == _TLS_HANDSHAKE:
        ends = await _end_tls(att, rec, inside, outside, target, first)
        if ends is None:
            return
        sb_tls, up_tls = ends
        sb_read, sb_write, up_read, up_write = (sb_tls.read, sb_tls.write, up_tls.read,
                                                up_tls.write)
        pending, default_port = b"", 443
    sb = _Buffered(sb_read, pending)
    try:
        head = http.parse_origin(await asyncio.wait_for(sb.head(), HEAD_TIMEOUT_S), target)
    except http.BadRequest as exc:
        rec.fail(f"refused in the tunnel: {exc.reason}")
        await sb_write(http.error_reply(exc.status, exc.reason))
        return
    fwd = http.forward_head(head, headers, default_port=default_port)
    rec.count(att.charge(len(fwd)), up=True)
    await up_write(fwd)
    limit = head.length if head.body == "length" else (None if head.body == "chunked" else 0)
    ups = asyncio.ensure_future(pump(att, rec, sb.read, up_write, up=True, left=limit))
    try:
        await pump(att, rec, up_read, sb_write, up=False, left=None)
    finally:
        ups.cancel()
        await asyncio.gather(ups, return_exceptions=True)
    if sb_tls is not None:
        await sb_tls.close_notify()


async def _end_tls(att: Attachment, rec: Record, inside: Stream, outside: Stream,
                   target: http.Target, first: bytes) -> tuple[tls.TlsConn, tls.TlsConn] | None:
    """TLS with the sandbox (as ``target``, from its CA) and with the host (verified)."""
    ca = att.ca
    if ca is None:
        rec.fail("TLS to an injected host, but the sandbox was made without a CA (inject "
                 "must be in the policy the sandbox is created with)")
        return None
    server = await asyncio.get_running_loop().run_in_executor(
        None, ca.server_context, target.host)
    sb = tls.TlsConn(inside[0].read, _writer(inside[1]), server, pending=first)
    try:
        await asyncio.wait_for(sb.handshake(), HEAD_TIMEOUT_S)
    except ssl.SSLError:
        rec.fail("the sandbox's TLS handshake failed (a server name other than the target?)")
        return None
    up = tls.TlsConn(outside[0].read, _writer(outside[1]), att.upstream_tls(),
                     server_hostname=target.host)
    try:
        await asyncio.wait_for(up.handshake(), DIAL_TIMEOUT_S)
    except ssl.SSLCertVerificationError:
        rec.fail("the host's certificate did not verify")
        with contextlib.suppress(ssl.SSLError, OSError):
            await sb.write(http.error_reply(502, "the host's certificate did not verify"))
        return None
    except ssl.SSLError:
        rec.fail("TLS with the host failed")
        with contextlib.suppress(ssl.SSLError, OSError):
            await sb.write(http.error_reply(502, "TLS with the host failed"))
        return None
    return sb, up
