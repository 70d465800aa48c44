"""The transparent mode's policy engine: the sandbox's TCP connections, redirected in its
gateway (warden.host.net.gateway) to one listener, are decided as the proxy decides its
requests, and DNS queries are answered by warden (warden.host.net.dns).

A connection is to the address the sandbox dialled (SO_ORIGINAL_DST). Its name is the one
warden's DNS gave out for that address; the name the connection claims in its first bytes
(TLS SNI or the HTTP Host header), if any, must be one of them, or it is refused: a sandbox
cannot dial one address and claim an allowed name for it. An address warden did not give out
is an address: only CIDR rules can allow it. The socket then dials the very address that was
dialled and checked. A name's first bytes are waited for SNIFF_TIMEOUT_S at most (a protocol
where the server speaks first starts that much later).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
from typing import TYPE_CHECKING

from warden.host.net import dns, gateway, http, netns, sniff
from warden.host.net.proxy import CHUNK, Stream, decide, dial, relay
from warden.host.net.rules import check_name

if TYPE_CHECKING:
    from warden.host.net.egress import Attachment, Record

__all__ = ["SNIFF_TIMEOUT_S", "Gateway", "open_gateway", "serve"]

SNIFF_TIMEOUT_S = 1.0
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


class Gateway:
    """warden's side of one sandbox's gateway: the namespace, its TCP listener's server and
    the DNS servers (in the gateway, and at 127.0.0.1:53 inside the sandbox)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.server: asyncio.base_events.Server | None = None
        self.dns: list[dns.DnsServer] = []

    async def close(self) -> None:
        for d in self.dns:
            d.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def open_gateway(att: Attachment) -> Gateway:
    """Build the gateway of ``att``'s sandbox and start serving it (from any thread but the
    loop's); a failure leaves nothing behind."""
    gw = Gateway(gateway.build(att.netns_fd))
    socks: list[socket.socket] = []
    try:
        socks.append(netns.in_netns(gw.fd, gateway.tcp_listener))
        socks.append(netns.in_netns(gw.fd, lambda: gateway.dns_socket(gateway.GATEWAY_ADDR,
                                                                       gateway.DNS_PORT)))
        socks.append(netns.in_netns(att.netns_fd, lambda: gateway.dns_socket("127.0.0.1", 53)))
        att.service.call(lambda: _start(att, gw, socks))
    except BaseException:
        for s in socks:
            s.close()
        att.service.call(gw.close)
        os.close(gw.fd)
        raise
    return gw


async def _start(att: Attachment, gw: Gateway, socks: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    gw.server = await asyncio.start_server(att.accept_redirected, sock=socks[0], limit=CHUNK)
    for s in socks[1:]:
        _, proto = await loop.create_datagram_endpoint(lambda: dns.DnsServer(att), sock=s)
        gw.dns.append(proto)


def original_dst(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, = struct.unpack("!H", raw[2:4])
    return socket.inet_ntoa(raw[4:8]), port


async def serve(att: Attachment, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    """Serve one redirected connection of the sandbox, then close it."""
    try:
        ip, port = original_dst(writer.get_extra_info("socket"))
        await _serve(att, ip, port, (reader, writer))
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve(att: Attachment, ip: str, port: int, inside: Stream) -> None:
    names = att.names_for(ip)
    prefix, name = b"", None
    if names:
        prefix, claimed = await _sniff(inside[0])
        if claimed is not None and claimed not in names:
            att.record(claimed, port, "transparent").deny(
                "the name it claims (SNI or Host) was not given out for the address dialled",
                ip)
            return
        name = claimed or names[0]
    rec = att.record(name or ip, port, "transparent")
    up = await _open(att, rec, name, ip, port)
    if up is None:
        return
    headers = att.injected(name) if name is not None else None
    if headers:
        from warden.host.net import inject

        await inject.serve(att, rec, inside, up, http.Target(name or ip, port), headers,
                           pending=prefix)
        return
    if prefix:
        rec.count(att.charge(len(prefix)), up=True)
        up[1].write(prefix)
    await relay(att, rec, inside, up)


async def _sniff(reader: asyncio.StreamReader) -> tuple[bytes, str | None]:
    """The connection's first bytes (as many as name a server) and the name they claim."""
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SNIFF_TIMEOUT_S
    while True:
        done, name = sniff.claimed_name(data)
        if done or len(data) >= sniff.MAX_SNIFF:
            return data, name
        try:
            more = await asyncio.wait_for(reader.read(sniff.MAX_SNIFF - len(data)),
                                          max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            return data, None
        if not more:
            return data, None
        data += more


async def _open(att: Attachment, rec: Record, name: str | None, ip: str,
                port: int) -> Stream | None:
    """Decide the dialled address (as ``name`` when warden gave it out for it) and dial it."""
    refusal = att.budget_refusal()
    policy = att.policy
    if refusal is not None or policy is None:
        rec.deny(refusal or "network is 'none'", ip)
        return None
    addr = ipaddress.ip_address(ip)
    pinned = False
    if name is not None:
        early = check_name(policy, name, port)
        if early is not None:
            rec.deny(early.rule, ip)
            return None
        pinned = (policy.resolve or {}).get(name) == ip
    decision = decide(att, name, port, addr, pinned=pinned)
    if not decision.allowed:
        rec.deny(decision.rule, ip)
        return None
    return await dial(att, rec, [(addr, decision.rule)], port)
