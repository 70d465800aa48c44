"""One connection from a sandbox to its egress proxy: HTTP forwarding, CONNECT and SOCKS5
(with remote resolution) on one port, told apart by the first byte (5 is SOCKS5).

Every connection is decided before a byte reaches the remote side: the name is checked before
it is resolved, each address it resolves to is checked, and the socket dials the address that
passed (warden.host.net.rules). Bytes are counted against the sandbox's budget as they pass.
All waits are bounded: the request head by HEAD_TIMEOUT_S, a dial by DIAL_TIMEOUT_S, a relay
that moves nothing by IDLE_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from warden.host.net import http
from warden.host.net.rules import (
    OWN,
    Decision,
    IPAddress,
    address_of,
    check_address,
    check_name,
    check_own,
)

if TYPE_CHECKING:
    from warden.host.net.egress import Attachment, Record

__all__ = ["DIAL_TIMEOUT_S", "HEAD_TIMEOUT_S", "IDLE_TIMEOUT_S", "decide", "dial", "pump", "relay",
           "serve", "tunnel"]

HEAD_TIMEOUT_S = 10.0
DIAL_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 300.0
CHUNK = 256 * 1024

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]

if sys.version_info >= (3, 11):
    deadline = asyncio.timeout  # a timer, where wait_for makes a task for what it waits on
else:
    @contextlib.asynccontextmanager
    async def deadline(seconds: float) -> AsyncIterator[None]:
        """asyncio.timeout for Python 3.10: the task is cancelled when ``seconds`` pass
        inside the block, and that comes out as TimeoutError."""
        task = asyncio.current_task()
        fired = []

        def fire() -> None:
            fired.append(True)
            if task is not None:
                task.cancel()

        handle = asyncio.get_running_loop().call_later(seconds, fire)
        try:
            yield
        except asyncio.CancelledError:
            if fired:
                raise asyncio.TimeoutError from None
            raise
        finally:
            handle.cancel()


async def serve(att: Attachment, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    """Serve one connection the sandbox made to its proxy, then close it."""
    try:
        # One deadline for all the request's head (asyncio.timeout: a timer, where wait_for
        # would make a task for every read).
        socks, raw = None, None
        async with deadline(HEAD_TIMEOUT_S):
            first = await reader.readexactly(1)
            if first == b"\x05":
                socks = await _socks_head(reader, writer)
            else:
                raw = await _http_head(first, reader, writer)
        if socks is not None:
            await _socks(att, socks, writer, reader)
        elif raw is not None:
            await _http(att, raw, reader, writer)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError,
            ConnectionError, OSError):
        pass  # the sandbox went away or stalled: its connection simply ends
    finally:
        writer.close()


async def _reply(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    writer.write(http.error_reply(status, reason))
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _http_head(first: bytes, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> bytes | None:
    """The request's head (without its blank line); None when it was answered already."""
    try:
        rest = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        await _reply(writer, 431, "request head too large")
        return None
    return first + rest[:-4]


async def _http(att: Attachment, raw: bytes, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    try:
        head = http.parse_head(raw)
    except http.BadRequest as exc:
        if exc.target is not None:
            att.record(exc.target.host, exc.target.port, "http").deny(exc.reason)
        await _reply(writer, exc.status, exc.reason)
        return
    via = "connect" if head.method == "CONNECT" else "http"
    rec = att.record(head.target.host, head.target.port, via)
    up = await open_target(att, rec, head.target)
    if up is None:
        await _reply(writer, 502 if rec.allowed else 403, rec.rule)
        return
    if via == "connect":
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await tunnel(att, rec, (reader, writer), up, head.target)
        return
    fwd = http.forward_head(head, att.injected(head.target.host))
    rec.count(att.charge(len(fwd)), up=True)
    up[1].write(fwd)
    limit = head.length if head.body == "length" else (None if head.body == "chunked" else 0)
    await relay(att, rec, (reader, writer), up, up_limit=limit, until_down=True)


async def _socks_head(reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> tuple[http.Target | None, int] | None:
    """The SOCKS5 request's target (or None and the reply code refusing it); None when the
    greeting was refused already."""
    methods = await reader.readexactly((await reader.readexactly(1))[0])
    if 0 not in methods:
        writer.write(b"\x05\xff")  # only "no authentication": the socket is the sandbox's
        return None
    writer.write(b"\x05\x00")
    req = await reader.readexactly(4)
    if req[0] != 5:
        return None
    size = {1: 6, 4: 18}.get(req[3])
    if size is not None:
        rest = await reader.readexactly(size)
    elif req[3] == 3:
        n = await reader.readexactly(1)
        rest = n + await reader.readexactly(n[0] + 2)
    else:
        rest = b""
    return http.socks_request(req[1:] + rest)


async def _socks(att: Attachment, request: tuple[http.Target | None, int],
                 writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
    target, code = request
    if target is None:
        writer.write(_socks_reply(code))
        return
    rec = att.record(target.host, target.port, "socks5")
    up = await open_target(att, rec, target)
    if up is None:
        writer.write(_socks_reply(5 if rec.allowed else 2))
        return
    writer.write(_socks_reply(0))
    await tunnel(att, rec, (reader, writer), up, target)


async def tunnel(att: Attachment, rec: Record, inside: Stream, outside: Stream,
                 target: http.Target) -> None:
    """Relay an open tunnel; one to a host whose requests get headers is served by
    warden.host.net.inject instead (its requests are read, and TLS ended, there)."""
    headers = att.injected(target.host)
    if headers:
        from warden.host.net import inject

        await inject.serve(att, rec, inside, outside, target, headers)
    else:
        await relay(att, rec, inside, outside)


def _socks_reply(code: int) -> bytes:
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


async def open_target(att: Attachment, rec: Record, target: http.Target) -> Stream | None:
    """Decide ``target`` for the sandbox and dial the address that passed; None (with ``rec``
    saying why) when it is refused or cannot be reached."""
    refusal = att.budget_refusal()
    if refusal is not None:
        rec.deny(refusal)
        return None
    policy = att.policy
    if policy is None:
        rec.deny("network is 'none'")
        return None
    literal = address_of(target.host)
    name = None if literal is not None else target.host
    pinned = False
    if name is None:
        addrs: list[str] = [str(literal)]
    else:
        early = check_name(policy, name, target.port)
        if early is not None:
            rec.deny(early.rule)
            return None
        pin = (policy.resolve or {}).get(name)
        pinned = pin is not None
        addrs = [str(pin)] if pin is not None else await att.resolve(name)
        if not addrs:
            rec.deny("the name does not resolve")
            return None
    passed = []
    for text in addrs:
        addr = address_of(text)
        if addr is None:
            continue
        d = decide(att, name, target.port, addr, pinned=pinned)
        if d.allowed:
            passed.append((addr, d.rule))
        elif not passed and not rec.rule:
            rec.deny(d.rule, str(addr))
    if not passed:
        return None
    return await dial(att, rec, passed, target.port)


def decide(att: Attachment, name: str | None, port: int, addr: IPAddress, *,
           pinned: bool = False) -> Decision:
    """The decision for dialling ``addr``:``port`` (asked for as ``name``) from the sandbox's
    egress namespace: the policy's (rules.check_address), and then, for an address the
    namespace holds itself, rules.check_own, asked of the kernel at this moment."""
    d = check_address(att.policy, name, port, addr, pinned=pinned)  # type: ignore[arg-type]
    if not d.allowed:
        return d
    try:
        own = att.dial().local.is_local(addr)
    except OSError:
        return Decision(False, f"{OWN} (the kernel could not be asked whether it is)")
    return check_own(att.policy, port, addr) if own else d  # type: ignore[arg-type]


async def dial(att: Attachment, rec: Record, passed: list, port: int) -> Stream | None:
    """Dial the first of ``passed`` (address, rule) that answers, from the egress namespace."""
    loop = asyncio.get_running_loop()
    error = ""
    for addr, rule in passed:
        family = socket.AF_INET6 if isinstance(addr, ipaddress.IPv6Address) else socket.AF_INET
        try:
            sock = att.dial().socket(family)
        except OSError as exc:
            error = exc.strerror or "no socket"
            continue
        try:
            async with deadline(DIAL_TIMEOUT_S):
                await loop.sock_connect(sock, (str(addr), port))
            stream = await asyncio.open_connection(sock=sock, limit=CHUNK)
        except (OSError, asyncio.TimeoutError) as exc:
            sock.close()
            error = getattr(exc, "strerror", None) or "timed out"
            rec.allow(str(addr), rule)
            continue
        rec.allow(str(addr), rule)
        return stream
    rec.fail(f"dial failed: {error}")
    return None


class _Idle:
    """Cancels the current task once nothing has moved for ``seconds``: one timer re-armed
    lazily, cheaper than a wait_for per read."""

    def __init__(self, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.seconds = seconds
        self.last = self.loop.time()
        self.handle = self.loop.call_later(seconds, self._check)

    def touch(self) -> None:
        self.last = self.loop.time()

    def _check(self) -> None:
        left = self.last + self.seconds - self.loop.time()
        if left > 0:
            self.handle = self.loop.call_later(left, self._check)
        elif self.task is not None:
            self.task.cancel()

    def stop(self) -> None:
        self.handle.cancel()


async def _pipe(att: Attachment, rec: Record | None, src: asyncio.StreamReader,
                dst: asyncio.StreamWriter, *, up: bool, limit: int | None = None) -> None:
    async def write(data: bytes) -> None:
        dst.write(data)
        await dst.drain()

    await pump(att, rec, src.read, write, up=up, left=limit)
    if dst.can_write_eof():
        with contextlib.suppress(OSError):
            dst.write_eof()


async def pump(att: Attachment, rec: Record | None, read: Callable[[int], Awaitable[bytes]],
               write: Callable[[bytes], Awaitable[None]], *, up: bool,
               left: int | None) -> None:
    """Copy from ``read`` to ``write`` until the end (or ``left`` bytes), counting into
    ``rec`` and the sandbox's budget; cancelled once nothing moved for IDLE_TIMEOUT_S."""
    idle = _Idle(IDLE_TIMEOUT_S)
    try:
        while left is None or left > 0:
            data = await read(CHUNK if left is None else min(CHUNK, left))
            idle.touch()
            if not data:
                break
            if rec is not None:
                allowed = att.charge(len(data))
                if allowed < len(data):
                    data = data[:allowed]
                    att.exhaust()
                rec.count(len(data), up=up)
            if data:
                await write(data)
            if rec is not None and att.budget_refusal() is not None:
                raise ConnectionAbortedError("byte budget spent")
            if left is not None:
                left -= len(data)
    finally:
        idle.stop()


async def relay(att: Attachment, rec: Record | None, inside: Stream, outside: Stream, *,
                up_limit: int | None = None, until_down: bool = False) -> None:
    """Copy both ways until both ends are done (or, with ``until_down``, until the remote
    side is), counting into ``rec`` (None: not egress, not counted)."""
    ups = asyncio.ensure_future(_pipe(att, rec, inside[0], outside[1], up=True, limit=up_limit))
    downs = asyncio.ensure_future(_pipe(att, rec, outside[0], inside[1], up=False))
    try:
        if until_down:
            await downs
        else:
            await asyncio.gather(ups, downs)
    except (ConnectionError, OSError, asyncio.TimeoutError):
        pass
    finally:
        for task in (ups, downs):
            task.cancel()
        await asyncio.gather(ups, downs, return_exceptions=True)
        outside[1].close()
        if rec is not None:
            rec.close()
