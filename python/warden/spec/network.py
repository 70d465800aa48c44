"""What a sandbox may reach: NetworkPolicy, its rules as parsed data, and NetworkEvent, one
entry of a sandbox's connection log. Frozen, validated data; no I/O, no name resolution.

A rule is a host name with an optional leading wildcard (``*.example.com``), or an address or
CIDR (``203.0.113.0/24``, ``[2001:db8::/32]``), each with an optional port or port range
(``:443``, ``:5432-5433``). ``*`` alone is every host name. A rule without a port covers every
port. The host side (warden.host.net.rules) decides with them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from warden.errors import InvalidArgument

__all__ = ["MODES", "FrozenMap", "NetworkEvent", "NetworkPolicy", "Rule", "host_name",
           "parse_rule"]

MODES = ("proxy", "transparent")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_RULES = 1024
_MAX_CONNECTIONS = 1 << 16
_MAX_BYTES = 1 << 50
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_HEADER_NAME_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class FrozenMap(Mapping[str, object]):
    """A read-only, hashable mapping (so that a policy can key the sandboxes made ahead)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, object]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> object:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __repr__(self) -> str:
        return repr(self._items)


class _Hidden(FrozenMap):
    """Headers to inject: their values may be secrets, so the repr names the headers only."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr({k: "<hidden>" for k in self})


def host_name(text: object, *, wildcard: bool = False) -> str | None:
    """``text`` as a lower-case DNS name (one trailing dot dropped), or None if it is not one.
    With ``wildcard``, ``*`` and a leading ``*.`` are allowed."""
    if not isinstance(text, str) or not text or len(text) > 254:
        return None
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if wildcard and name == "*":
        return name
    labels = name.split(".")
    if wildcard and labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    for label in labels:
        if (not label or len(label) > 63 or not set(label) <= _NAME_CHARS
                or label.startswith("-") or label.endswith("-")):
            return None
    return name


@dataclass(frozen=True)
class Rule:
    """One parsed rule: a name pattern or a network, and the ports it covers."""

    text: str                         # as written, for the log ("allow api.example.com:443")
    name: str | None                  # "api.example.com", "*.example.com", "*"; None for a CIDR
    network: IPNetwork | None         # the addresses of a CIDR rule; None for a name
    ports: tuple[int, int] | None     # inclusive range; None for every port

    def covers_port(self, port: int) -> bool:
        return self.ports is None or self.ports[0] <= port <= self.ports[1]

    def covers_name(self, name: str) -> bool:
        if self.name is None:
            return False
        if self.name == "*":
            return True
        if self.name.startswith("*."):
            return name.endswith(self.name[1:])
        return name == self.name


def _ports(text: str, rule: str) -> tuple[int, int]:
    lo_s, sep, hi_s = text.partition("-")
    def number(s: str) -> int:
        return int(s) if s.isascii() and s.isdigit() and len(s) <= 5 else -1

    lo = number(lo_s)
    hi = number(hi_s) if sep else lo
    if not (1 <= lo <= hi <= 65535):
        raise InvalidArgument("rule", rule, "a port from 1 to 65535 or a range LO-HI, e.g. "
                              "api.example.com:443 or db.internal:5432-5433")
    return lo, hi


def _split(rule: str) -> tuple[str, str | None]:
    """(host part, port part or None): brackets for IPv6, a single colon otherwise."""
    if rule.startswith("["):
        inner, sep, rest = rule[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InvalidArgument("rule", rule, "[IPv6 address or CIDR] with an optional :PORT")
        return inner, rest[1:] if rest else None
    if rule.count(":") > 1:
        return rule, None  # an IPv6 address or CIDR without a port
    host, sep, port = rule.partition(":")
    return host, port if sep else None


def parse_rule(rule: object) -> Rule:
    """A rule as written -> Rule; anything else is an InvalidArgument naming the rule."""
    if not isinstance(rule, str) or not rule or len(rule) > 300 or rule != rule.strip():
        raise InvalidArgument("rule", rule, "a string: a host name (optionally *.domain), an "
                              "address or CIDR, with an optional :PORT or :LO-HI")
    host, port_text = _split(rule)
    ports = _ports(port_text, rule) if port_text is not None else None
    if "/" in host or ":" in host or _is_address(host):
        try:
            net = ipaddress.ip_network(host, strict=True)
        except ValueError:
            raise InvalidArgument("rule", rule, "an address or CIDR whose host bits are zero "
                                  "(e.g. 203.0.113.0/24), or a host name") from None
        return Rule(rule, None, net, ports)
    name = host_name(host, wildcard=True)
    if name is None:
        raise InvalidArgument("rule", rule, "a host name of letters, digits, '-' and '.', "
                              "optionally starting with '*.' (IDN names in their xn-- form)")
    return Rule(rule, name, None, ports)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _rules(value: object, argument: str) -> tuple[Rule, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (tuple, list, frozenset, set)) or len(items) > _MAX_RULES:
        raise InvalidArgument(argument, value, f"a list of up to {_MAX_RULES} rules, e.g. "
                              "['api.example.com:443', '*.pypi.org']")
    return tuple(parse_rule(r) for r in items)


def _resolve_map(value: object) -> FrozenMap | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgument("resolve", value, "a mapping of host names to addresses, e.g. "
                              "{'api.example.com': '203.0.113.7'}")
    out: dict[str, object] = {}
    for name, addr in value.items():
        key = host_name(name)
        if key is None or not isinstance(addr, str) or not _is_address(addr):
            raise InvalidArgument("resolve", dict(value), f"host names mapped to IPv4 or IPv6 "
                                  f"addresses; {name!r}: {addr!r} is not")
        out[key] = str(ipaddress.ip_address(addr))
    return FrozenMap(out)


def _inject_map(value: object) -> FrozenMap | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgument("inject", value, "a mapping of host names to header mappings")
    out: dict[str, object] = {}
    for host, headers in value.items():
        key = host_name(host)
        if key is None or not isinstance(headers, Mapping):
            raise InvalidArgument("inject", host, "a host name mapped to {header: value}")
        for name, text in headers.items():
            if (not isinstance(name, str) or not name or not set(name) <= _HEADER_NAME_CHARS
                    or not isinstance(text, str) or any(c in text for c in "\r\n\0")):
                # The value may be a secret: it is never quoted.
                raise InvalidArgument("inject", f"{host}: {name!r}", "header names of token "
                                      "characters and values without CR, LF or NUL")
        out[key] = _Hidden(dict(headers))
    return FrozenMap(out)


def _limit(name: str, value: object, hi: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise InvalidArgument(name, value, f"a whole number from 1 to {hi}, or None")


@dataclass(frozen=True)
class NetworkPolicy:
    """Egress to named hosts only. ``allow``/``deny`` are rules (see the module); deny wins.
    ``resolve`` pins names to addresses (trusted as given); ``egress_netns`` is the path of
    the network namespace warden dials out from (default: its own); ``max_connections`` caps
    the connections open at once and ``max_bytes`` the bytes (up and down) over the
    sandbox's life. ``inject`` maps host names to headers that warden's proxy sets on every
    request to that host (HTTPS ones by ending TLS with the sandbox's own CA); the values
    never enter the sandbox. ``upstream_ca`` is the path of a PEM file of CA certificates that
    the proxy trusts, instead of the host's trust store, when it opens TLS to an injected
    host. A provider that cannot give a part refuses the sandbox (ProviderUnavailable)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    resolve: Mapping[str, str] | None = None
    inject: Mapping[str, Mapping[str, str]] | None = None
    mode: str = "proxy"
    egress_netns: str | None = None
    max_connections: int | None = None
    max_bytes: int | None = None
    upstream_ca: str | None = None
    allow_rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False)
    deny_rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        allow, deny = _rules(self.allow, "allow"), _rules(self.deny, "deny")
        set_ = object.__setattr__  # a frozen dataclass normalises its own fields here only
        set_(self, "allow", tuple(r.text for r in allow))
        set_(self, "deny", tuple(r.text for r in deny))
        set_(self, "allow_rules", allow)
        set_(self, "deny_rules", deny)
        set_(self, "resolve", _resolve_map(self.resolve))
        set_(self, "inject", _inject_map(self.inject))
        if self.mode not in MODES:
            raise InvalidArgument("mode", self.mode, " or ".join(repr(m) for m in MODES))
        ns = self.egress_netns
        if ns is not None and (not isinstance(ns, str) or not ns.startswith("/")
                               or "\0" in ns or len(ns) > 4096):
            raise InvalidArgument("egress_netns", ns, "None or the absolute path of a network "
                                  "namespace, e.g. /run/netns/NAME or /proc/PID/ns/net")
        ca = self.upstream_ca
        if ca is not None and (not isinstance(ca, str) or not ca.startswith("/")
                               or "\0" in ca or len(ca) > 4096):
            raise InvalidArgument("upstream_ca", ca, "None or the absolute path of a PEM file "
                                  "of CA certificates")
        _limit("max_connections", self.max_connections, _MAX_CONNECTIONS)
        _limit("max_bytes", self.max_bytes, _MAX_BYTES)


@dataclass(frozen=True)
class NetworkEvent:
    """One connection attempt of a sandbox, as its network log has it."""

    time: float                # when it was asked for (seconds since the epoch)
    host: str                  # the name or address the sandbox asked for
    port: int
    address: str | None        # the address dialled (or that was refused); None if none
    allowed: bool
    rule: str                  # what decided: "allow api.example.com:443", "deny ...",
    #                            "always denied: loopback 127.0.0.0/8", "no rule allows it", ...
    via: str                   # "http", "connect" or "socks5"
    bytes_up: int = 0          # sandbox -> remote
    bytes_down: int = 0        # remote -> sandbox
    duration_s: float = 0.0
    open: bool = False         # still relaying when the log was read
