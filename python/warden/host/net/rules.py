"""The allowlist matcher: whether a sandbox may connect to a host and port, and which rule
said so. Pure: no resolution, no sockets. The proxy asks twice: once with the name the
sandbox asked for (before any lookup, so that a name no rule could allow is never resolved),
then with each address the name resolved to, which is the address dialled.

Order: a deny rule wins over everything; an address in an always-denied range (loopback,
link-local with the cloud metadata address, RFC 1918, CGNAT, ULA, multicast, "this network",
reserved) is refused unless a CIDR allow rule lying wholly inside that range covers it, or the
name was pinned by ``resolve`` (trusted as given); then an allow rule must cover it. Last, an
address the egress namespace holds itself is refused unless a CIDR rule names it
(``check_own``; whether it is one is the kernel's answer, asked by proxy.decide).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from warden.spec.network import NetworkPolicy, Rule

__all__ = ["ALWAYS_DENIED", "OWN", "Decision", "address_of", "check_address", "check_dns",
           "check_name", "check_own", "dns_ports"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALWAYS_DENIED = tuple((ipaddress.ip_network(net), label) for net, label in (
    ("0.0.0.0/8", "this network"),
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (RFC 6598)"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved and broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("fc00::/7", "unique local (ULA)"),
    ("ff00::/8", "multicast"),
))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str          # "allow a.example.com:443", "deny ...", "always denied: ...", ...


NO_RULE = "no rule allows it"


def address_of(text: str) -> IPAddress | None:
    """``text`` as an address (an IPv4-mapped IPv6 address as the IPv4 one it carries), or
    None when it is not a literal address."""
    text = text.strip("[]")
    if ":" not in text and not text[:1].isdigit():
        return None  # a name: no address literal begins so (and a failed parse is dear)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _first(rules: tuple[Rule, ...], name: str | None, addr: IPAddress | None,
           port: int) -> Rule | None:
    for r in rules:
        if not r.covers_port(port):
            continue
        if name is not None and r.covers_name(name):
            return r
        if addr is not None and r.network is not None and addr in r.network:
            return r
    return None


def check_name(policy: NetworkPolicy, name: str, port: int) -> Decision | None:
    """Before resolution: a Decision if ``name`` (normalised) is settled by name alone — denied
    by a deny rule, or allowed by no rule at all, not even possibly by a CIDR rule after
    resolution — else None: resolve it and check each address."""
    deny = _first(policy.deny_rules, name, None, port)
    if deny is not None:
        return Decision(False, f"deny {deny.text}")
    if _first(policy.allow_rules, name, None, port) is not None:
        return None
    if any(r.network is not None and r.covers_port(port) for r in policy.allow_rules):
        return None
    return Decision(False, NO_RULE)


def _special(addr: IPAddress) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                       str] | None:
    for net, label in ALWAYS_DENIED:
        if addr.version == net.version and addr in net:
            return net, label
    return None


def check_address(policy: NetworkPolicy, name: str | None, port: int, addr: IPAddress, *,
                  pinned: bool = False) -> Decision:
    """The decision for dialling ``addr``:``port``, asked for as ``name`` (None for a bare
    address). ``pinned``: the address came from the policy's own ``resolve``."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    deny = _first(policy.deny_rules, name, addr, port)
    if deny is not None:
        return Decision(False, f"deny {deny.text}")
    special = _special(addr)
    if special is not None and not pinned:
        net, label = special
        for r in policy.allow_rules:
            if (r.network is not None and r.covers_port(port) and addr in r.network
                    and r.network.version == net.version and r.network.subnet_of(net)):  # type: ignore[arg-type]
                return Decision(True, f"allow {r.text}")
        return Decision(False, f"always denied: {label} {net}")
    allow = _first(policy.allow_rules, name, addr, port)
    if allow is not None:
        return Decision(True, f"allow {allow.text}")
    return Decision(False, NO_RULE)


OWN = "always denied: an address of the egress namespace itself"
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def check_own(policy: NetworkPolicy, port: int, addr: IPAddress) -> Decision:
    """The decision for ``addr``, an address the egress namespace holds itself (the host's own
    when that is warden's namespace): refused, whatever allowed it so far (a name, a pin, a
    wide CIDR such as 0.0.0.0/0 or a private range), unless a CIDR allow rule names it: one
    that covers it on ``port`` and lies wholly inside loopback (for a loopback address) or is
    that one address (/32, /128). Deny rules were asked before."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    home = next((n for n in _LOOPBACK if addr.version == n.version and addr in n),
                ipaddress.ip_network(addr))
    for r in policy.allow_rules:
        if (r.network is not None and r.covers_port(port) and addr in r.network
                and r.network.version == home.version
                and r.network.subnet_of(home)):  # type: ignore[arg-type]
            return Decision(True, f"allow {r.text}")
    return Decision(False, OWN)


def check_dns(policy: NetworkPolicy, name: str) -> Decision:
    """Whether warden answers a DNS query for ``name`` (transparent mode): only for a name an
    allow rule names (on some port) and no deny rule refuses on every port. A name that a
    CIDR rule alone might allow is not answered: such an address is dialled as an address."""
    for r in policy.deny_rules:
        if r.ports is None and r.covers_name(name):
            return Decision(False, f"deny {r.text}")
    for r in policy.allow_rules:
        if r.covers_name(name):
            return Decision(True, f"allow {r.text}")
    return Decision(False, NO_RULE)


def dns_ports(policy: NetworkPolicy, name: str) -> list[int]:
    """One port of each allow rule naming ``name``: an address is given out for the name
    when the sandbox could connect to it on one of them."""
    return [r.ports[0] if r.ports else 443 for r in policy.allow_rules if r.covers_name(name)]
