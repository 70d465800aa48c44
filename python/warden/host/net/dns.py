"""warden's DNS server for a sandbox in transparent mode: it answers A queries for names the
policy allows, with addresses resolved on the host side (or pinned) that the policy would let
the sandbox dial; every other name gets NXDOMAIN, is logged, and is never looked up, so DNS
cannot carry data out (no tunnelling through queries). AAAA and other types of an allowed
name get an empty answer (the sandbox has IPv4 only).

The codec is pure and bounded (RFC 1035, 4.1): one question, no compression in it, class IN.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from warden.host.net.proxy import decide
from warden.host.net.rules import address_of, check_dns, dns_ports
from warden.spec.network import host_name

if TYPE_CHECKING:
    from warden.host.net.egress import Attachment

__all__ = ["NXDOMAIN", "DnsServer", "Query", "parse_query", "reply"]

NOERROR, FORMERR, NXDOMAIN, REFUSED = 0, 1, 3, 5
A, AAAA, IN = 1, 28, 1
TTL_S = 30
MAX_PENDING = 32


@dataclass(frozen=True)
class Query:
    id: int
    rd: bool                # recursion desired, echoed
    name: str | None        # normalised; None when the name is not a host name
    qtype: int
    question: bytes         # as sent, echoed in the answer


def parse_query(data: bytes) -> Query | None:
    """A standard query with one question, or None (such datagrams are dropped)."""
    if len(data) < 12 or len(data) > 4096:
        return None
    flags = int.from_bytes(data[2:4], "big")
    if flags & 0x8000 or (flags >> 11) & 0xF or int.from_bytes(data[4:6], "big") != 1:
        return None
    i, labels = 12, []
    while True:
        if i >= len(data):
            return None
        n = data[i]
        i += 1
        if n == 0:
            break
        if n > 63 or i + n > len(data):
            return None  # compression pointers and extended labels included
        labels.append(data[i:i + n])
        i += n
    if i + 4 > len(data) or i - 12 > 255:
        return None
    qtype, qclass = int.from_bytes(data[i:i + 2], "big"), int.from_bytes(data[i + 2:i + 4], "big")
    if qclass != IN:
        return None
    try:
        name = host_name(".".join(label.decode("ascii") for label in labels))
    except UnicodeDecodeError:
        name = None
    return Query(int.from_bytes(data[:2], "big"), bool(flags & 0x0100), name, qtype,
                 data[12:i + 4])


def reply(q: Query, rcode: int, addresses: Sequence[str] = ()) -> bytes:
    """The answer to ``q``: ``rcode`` and, for NOERROR, one A or AAAA record per address."""
    flags = 0x8000 | 0x0400 | (0x0100 if q.rd else 0) | 0x0080 | rcode
    records = b""
    for text in addresses:
        packed = ipaddress.ip_address(text).packed
        rtype = A if len(packed) == 4 else AAAA
        records += (b"\xc0\x0c" + rtype.to_bytes(2, "big") + IN.to_bytes(2, "big")
                    + TTL_S.to_bytes(4, "big") + len(packed).to_bytes(2, "big") + packed)
    head = (q.id.to_bytes(2, "big") + flags.to_bytes(2, "big") + b"\x00\x01"
            + len(addresses).to_bytes(2, "big") + b"\x00\x00\x00\x00")
    return head + q.question + records


class DnsServer(asyncio.DatagramProtocol):
    """The DNS server of one sandbox (one per socket it listens on)."""

    def __init__(self, att: Attachment) -> None:
        self.att = att
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        q = parse_query(data)
        if q is None or len(self.pending) >= MAX_PENDING:
            return  # a sandbox that floods its resolver waits on its own queries only
        task = asyncio.ensure_future(self._answer(q, addr))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    def close(self) -> None:
        for task in list(self.pending):
            task.cancel()
        if self.transport is not None:
            self.transport.close()

    async def _answer(self, q: Query, addr: tuple[str, int]) -> None:
        rcode, addresses = await self._decide(q)
        if self.transport is not None:
            with contextlib.suppress(OSError):
                self.transport.sendto(reply(q, rcode, addresses), addr)

    async def _decide(self, q: Query) -> tuple[int, list[str]]:
        policy = self.att.policy
        if q.name is None:
            self.att.record("", 53, "dns").deny("not a host name")
            return NXDOMAIN, []
        rec = self.att.record(q.name, 53, "dns")
        decision = check_dns(policy, q.name) if policy is not None else None
        if decision is None or not decision.allowed:
            rec.deny(decision.rule if decision is not None else "network is 'none'")
            return NXDOMAIN, []
        if q.qtype != A or policy is None:
            rec.allowed, rec.rule = True, decision.rule  # answered empty: no address
            rec.close()
            return NOERROR, []
        pin = (policy.resolve or {}).get(q.name)
        found = [str(pin)] if pin is not None else await self.att.resolve(q.name)
        ports = dns_ports(policy, q.name)
        given = []
        for text in found:
            a = address_of(text)
            if a is None or a.version != 4:
                continue
            if any(decide(self.att, q.name, p, a, pinned=pin is not None).allowed
                   for p in ports):
                given.append(str(a))
        if not given:
            rec.deny("no address of the name may be dialled" if found
                     else "the name does not resolve")
            return NXDOMAIN, []
        self.att.remember(q.name, given)
        rec.allow(",".join(given), decision.rule)
        rec.close()
        return NOERROR, given
