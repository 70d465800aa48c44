"""`warden run`'s network flags make the NetworkPolicy they name, field for field; a wrong
value is a usage error naming the flag."""

from __future__ import annotations

import pytest
from warden.cli import build_parser
from warden.cli.run import _network
from warden.spec.network import NetworkPolicy


def _policy(*flags: str):
    return _network(build_parser().parse_args(["run", *flags, "--", "true"]))


def test_no_network_flag_keeps_none():
    assert _policy() == "none"


def test_every_field_of_a_policy_has_a_flag():
    got = _policy("--allow", "api.test:443", "--allow", "*.pypi.org", "--deny", "evil.pypi.org",
                  "--resolve", "api.test=198.51.100.7", "--egress-netns", "/run/netns/x",
                  "--mode", "transparent", "--max-connections", "8", "--max-bytes", "50M")
    assert got == NetworkPolicy(allow=("api.test:443", "*.pypi.org"), deny=("evil.pypi.org",),
                                resolve={"api.test": "198.51.100.7"},
                                egress_netns="/run/netns/x", mode="transparent",
                                max_connections=8, max_bytes=50 << 20)


@pytest.mark.parametrize(("flags", "field", "value"), [
    (("--mode", "proxy"), "mode", "proxy"),
    (("--max-connections", "3"), "max_connections", 3),
    (("--max-bytes", "1000"), "max_bytes", 1000),
    (("--max-bytes", "2K"), "max_bytes", 2048),
    (("--resolve", "a.test=198.51.100.1"), "resolve", {"a.test": "198.51.100.1"}),
])
def test_each_flag_alone_makes_a_policy_that_allows_nothing_else(flags, field, value):
    got = _policy(*flags)
    assert isinstance(got, NetworkPolicy)
    assert getattr(got, field) == value
    assert got.allow_rules == ()


@pytest.mark.parametrize(("flags", "says"), [
    (("--mode", "tunnel"), "invalid choice: 'tunnel'"),
    (("--max-connections", "0"), "0 is below the least allowed, 1"),
    (("--max-connections", "many"), "'many' is not a whole number"),
    (("--max-bytes", "0"), "0 is below the least allowed, 1 byte"),
    (("--max-bytes", "lots"), "not a size"),
])
def test_a_wrong_value_is_a_usage_error_naming_the_flag(capsys, flags, says):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", *flags, "--", "true"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flags[0]}" in err and says in err
