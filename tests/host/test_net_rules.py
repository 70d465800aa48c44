"""The allowlist matcher: deny wins, always-denied ranges, CIDR exceptions, pins, ports."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from warden.host.net.local import LocalRoutes
from warden.host.net.rules import ALWAYS_DENIED, address_of, check_address, check_name, check_own
from warden.spec.network import NetworkPolicy


def decide(policy, host, port, addr=None, pinned=False):
    name = None if address_of(host) else host
    if name is not None:
        early = check_name(policy, name, port)
        if early is not None:
            return early
    return check_address(policy, name, port, address_of(addr or host), pinned=pinned)


P = NetworkPolicy(allow=["api.example.com:443", "*.pypi.org", "db.internal:5432-5433",
                         "203.0.113.0/24:443", "10.1.0.0/16:5432", "[fd00:1::/64]"],
                  deny=["evil.pypi.org", "203.0.113.66"])


@pytest.mark.parametrize(("host", "port", "addr", "allowed", "rule"), [
    ("api.example.com", 443, "198.51.100.1", True, "allow api.example.com:443"),
    ("api.example.com", 80, "198.51.100.9", False, "no rule allows it"),
    ("files.pypi.org", 8080, "198.51.100.2", True, "allow *.pypi.org"),
    ("pypi.org", 443, "198.51.100.9", False, "no rule allows it"),
    ("evil.pypi.org", 443, None, False, "deny evil.pypi.org"),
    ("db.internal", 5433, "198.51.100.3", True, "allow db.internal:5432-5433"),
    ("203.0.113.5", 443, None, True, "allow 203.0.113.0/24:443"),
    ("203.0.113.66", 443, None, False, "deny 203.0.113.66"),
    ("203.0.113.5", 80, None, False, "no rule allows it"),
    ("10.1.2.3", 5432, None, True, "allow 10.1.0.0/16:5432"),
    ("10.2.0.1", 5432, None, False, "always denied: private (RFC 1918) 10.0.0.0/8"),
    ("fd00:1::5", 22, None, True, "allow [fd00:1::/64]"),
    ("fd00:2::5", 22, None, False, "always denied: unique local (ULA) fc00::/7"),
    ("api.example.com", 443, "169.254.169.254", False,
     "always denied: link-local (cloud metadata) 169.254.0.0/16"),
    ("api.example.com", 443, "::ffff:127.0.0.1", False, "always denied: loopback 127.0.0.0/8"),
    ("api.example.com", 443, "::1", False, "always denied: loopback ::1/128"),
    ("api.example.com", 443, "0.0.0.0", False, "always denied: this network 0.0.0.0/8"),
    ("api.example.com", 443, "224.0.0.1", False, "always denied: multicast 224.0.0.0/4"),
    ("files.pypi.org", 443, "203.0.113.66", False, "deny 203.0.113.66"),
])
def test_decisions(host, port, addr, allowed, rule):
    d = decide(P, host, port, addr)
    assert (d.allowed, d.rule) == (allowed, rule)


def test_a_pinned_name_is_trusted_as_given_but_deny_still_wins():
    p = NetworkPolicy(allow=["api.test"], deny=["127.0.0.2"], resolve={"api.test": "127.0.0.1"})
    assert check_address(p, "api.test", 80, address_of("127.0.0.1"), pinned=True).allowed
    assert not check_address(p, "api.test", 80, address_of("127.0.0.2"), pinned=True).allowed
    assert not check_address(p, "api.test", 80, address_of("127.0.0.1")).allowed


def test_a_cidr_wider_than_an_always_denied_range_does_not_open_it():
    p = NetworkPolicy(allow=["0.0.0.0/0", "::/0"])
    for addr in ("127.0.0.1", "169.254.169.254", "10.0.0.1", "192.168.1.1", "fe80::1"):
        assert not check_address(p, None, 80, address_of(addr)).allowed, addr
    assert check_address(p, None, 80, address_of("198.51.100.1")).allowed


_v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_v6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
_names = st.sampled_from(["a.example.com", "b.example.com", "x.test", "api.test"])


@given(addr=_v4 | _v6, name=st.none() | _names, port=st.integers(1, 65535))
def test_names_never_open_an_always_denied_address(addr, name, port):
    p = NetworkPolicy(allow=["*", "*.example.com", "x.test"])
    d = check_address(p, name, port, addr)
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    special = any((mapped or addr) in net for net, _ in ALWAYS_DENIED
                  if net.version == (mapped or addr).version)
    if special:
        assert not d.allowed


@given(addr=_v4, name=_names, port=st.integers(1, 65535),
       allow=st.lists(st.sampled_from(["*", "*.example.com", "x.test", "0.0.0.0/0",
                                       "api.test:1-1000"]), max_size=4))
def test_deny_wins_over_any_allow(addr, name, port, allow):
    p = NetworkPolicy(allow=allow, deny=[name])
    assert check_name(p, name, port) is not None
    assert not check_name(p, name, port).allowed
    p = NetworkPolicy(allow=allow, deny=[f"{addr}"])
    assert not check_address(p, name, port, addr, pinned=True).allowed


def test_without_a_cidr_rule_a_name_no_rule_allows_is_settled_before_resolution():
    p = NetworkPolicy(allow=["api.example.com:443"])
    assert check_name(p, "api.example.com", 443) is None
    assert not check_name(p, "api.example.com", 80).allowed
    assert not check_name(p, "other.example.com", 443).allowed


OWN = "always denied: an address of the egress namespace itself"


@pytest.mark.parametrize(("allow", "addr", "allowed", "rule"), [
    (["0.0.0.0/0:80"], "192.0.2.2", False, OWN),
    (["192.0.2.0/24:80"], "192.0.2.2", False, OWN),
    (["192.168.0.0/16:80"], "192.168.1.5", False, OWN),
    (["192.0.2.2:80"], "192.0.2.2", True, "allow 192.0.2.2:80"),
    (["192.0.2.2/32"], "192.0.2.2", True, "allow 192.0.2.2/32"),
    (["192.0.2.2:81"], "192.0.2.2", False, OWN),
    (["127.0.0.0/8:80"], "127.0.0.1", True, "allow 127.0.0.0/8:80"),
    (["127.0.0.1:80"], "127.0.0.1", True, "allow 127.0.0.1:80"),
    (["0.0.0.0/0:80"], "127.0.0.1", False, OWN),
    (["[fd00::2]:80"], "fd00::2", True, "allow [fd00::2]:80"),
    (["[fd00::/64]:80"], "fd00::2", False, OWN),
    (["api.test:80"], "192.0.2.2", False, OWN),
])
def test_an_own_address_is_opened_only_by_a_cidr_rule_naming_it(allow, addr, allowed, rule):
    d = check_own(NetworkPolicy(allow=allow), 80, address_of(addr))
    assert (d.allowed, d.rule) == (allowed, rule)


def test_the_kernel_says_which_addresses_are_the_namespace_s_own():
    lr = LocalRoutes()
    try:
        for addr in ("127.0.0.1", "127.3.4.5", "::1", "0.0.0.0", "::"):
            assert lr.is_local(address_of(addr)), addr
        # TEST-NET-2 is held by no interface here (the world tests put it elsewhere).
        assert not lr.is_local(address_of("198.51.100.99"))
    finally:
        lr.close()
