"""NetworkPolicy: frozen, validated, hashable; rules parsed as the issue writes them."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from warden.errors import InvalidArgument
from warden.spec.network import NetworkPolicy, parse_rule


def test_defaults_and_names_are_those_of_the_api():
    p = NetworkPolicy()
    assert (p.allow, p.deny, p.resolve, p.inject, p.mode, p.egress_netns, p.max_connections,
            p.max_bytes) == ((), (), None, None, "proxy", None, None, None)


def test_a_policy_is_frozen_and_hashable():
    p = NetworkPolicy(allow=["a.example.com"], resolve={"A.Example.com.": "203.0.113.7"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.mode = "transparent"  # type: ignore[misc]
    assert hash(p) == hash(NetworkPolicy(allow=("a.example.com",),
                                         resolve={"a.example.com": "203.0.113.7"}))
    assert dict(p.resolve) == {"a.example.com": "203.0.113.7"}
    with pytest.raises(TypeError):
        p.resolve["x"] = "1.2.3.4"  # type: ignore[index]


@pytest.mark.parametrize(("rule", "name", "network", "ports"), [
    ("api.example.com", "api.example.com", None, None),
    ("*.example.com", "*.example.com", None, None),
    ("*", "*", None, None),
    ("API.Example.com:443", "api.example.com", None, (443, 443)),
    ("db.internal:5432-5433", "db.internal", None, (5432, 5433)),
    ("203.0.113.0/24:443", None, "203.0.113.0/24", (443, 443)),
    ("198.51.100.7", None, "198.51.100.7/32", None),
    ("[2001:db8::/32]:443", None, "2001:db8::/32", (443, 443)),
    ("2001:db8::1", None, "2001:db8::1/128", None),
])
def test_rules_parse_as_written(rule, name, network, ports):
    r = parse_rule(rule)
    assert (r.name, r.ports) == (name, ports)
    assert r.network == (ipaddress.ip_network(network) if network else None)


@pytest.mark.parametrize("rule", [
    "", " a.com", "a.com:0", "a.com:65536", "a.com:5-3", "a.com:", "a.com:443x", "a.com:٤٤٣",
    "10.0.0.1/8", "*a.com", "a.*.com", "a..com", "-a.com", "[::1", "[::1]443", "a b", 7, None,
    "a.com:1-2-3", "ä.com",
])
def test_malformed_rules_are_refused_by_name(rule):
    with pytest.raises(InvalidArgument) as info:
        NetworkPolicy(allow=[rule])
    assert info.value.argument in ("rule", "allow")


@pytest.mark.parametrize(("kw", "argument"), [
    ({"mode": "bridge"}, "mode"),
    ({"egress_netns": "run/netns/x"}, "egress_netns"),
    ({"egress_netns": 3}, "egress_netns"),
    ({"upstream_ca": "ca.pem"}, "upstream_ca"),
    ({"upstream_ca": b"/ca.pem"}, "upstream_ca"),
    ({"max_connections": 0}, "max_connections"),
    ({"max_connections": True}, "max_connections"),
    ({"max_bytes": -1}, "max_bytes"),
    ({"max_bytes": 1.5}, "max_bytes"),
    ({"resolve": {"a.com": "not-an-address"}}, "resolve"),
    ({"resolve": {"bad name": "1.2.3.4"}}, "resolve"),
    ({"resolve": ["a.com"]}, "resolve"),
    ({"inject": {"a.com": {"X-Key": "v\r\nEvil: 1"}}}, "inject"),
    ({"inject": {"a.com": {"Bad Header": "v"}}}, "inject"),
    ({"allow": 5}, "allow"),
    ({"deny": ["a.com"] * 2000}, "deny"),
])
def test_other_fields_are_validated(kw, argument):
    with pytest.raises(InvalidArgument) as info:
        NetworkPolicy(**kw)
    assert info.value.argument == argument


def test_an_injected_secret_is_never_quoted_in_an_error():
    with pytest.raises(InvalidArgument) as info:
        NetworkPolicy(inject={"a.com": {"Authorization": "Bearer hunter2\n"}})
    assert "hunter2" not in str(info.value)


def test_a_single_rule_may_be_given_as_a_string():
    assert NetworkPolicy(allow="a.example.com:443").allow == ("a.example.com:443",)


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_name = st.lists(_label, min_size=1, max_size=4).map(".".join)


@given(name=_name, wild=st.booleans(),
       ports=st.none() | st.tuples(st.integers(1, 65535), st.integers(0, 100)))
def test_every_well_formed_name_rule_parses_to_what_it_says(name, wild, ports):
    text = ("*." if wild else "") + name
    if ports is not None:
        lo, extra = ports
        hi = min(65535, lo + extra)
        text += f":{lo}" if lo == hi else f":{lo}-{hi}"
    r = parse_rule(text)
    if r.network is not None:  # an all-digit name such as 1.2.3.4 is an address
        assert not wild
        return
    assert r.name == ("*." if wild else "") + name
    assert r.ports == (None if ports is None else (ports[0], min(65535, sum(ports))))


@given(st.text(max_size=40))
def test_any_text_is_a_rule_or_an_invalid_argument(text):
    try:
        parse_rule(text)
    except InvalidArgument:
        pass


def test_an_injected_secret_is_not_in_the_policys_repr():
    p = NetworkPolicy(inject={"a.com": {"Authorization": "Bearer hunter2"}})
    assert "hunter2" not in repr(p) and "Authorization" in repr(p)
    assert p.inject["a.com"]["Authorization"] == "Bearer hunter2"
