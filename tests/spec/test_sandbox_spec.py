"""SandboxSpec refuses what no provider could make of it, as an InvalidArgument naming the
field, when it is made."""

from __future__ import annotations

import pytest
from warden import InvalidArgument, Limits
from warden.spec.limits import NETWORK_POLICIES
from warden.spec.sandbox import SandboxSpec, known_network


@pytest.mark.parametrize("argument,kwargs", [
    ("labels", {"labels": {"tenant": 5}}),
    ("labels", {"labels": {5: "x"}}),
    ("labels", {"labels": ["tenant"]}),
    ("network", {"network": "host"}),
    ("network", {"network": None}),
    ("limits", {"limits": {"memory_mb": 64}}),
])
def test_bad_fields_are_invalid_arguments(argument, kwargs):
    with pytest.raises(InvalidArgument) as info:
        SandboxSpec(**kwargs)
    assert info.value.argument == argument


def test_an_unknown_network_policy_says_it_is_unknown():
    with pytest.raises(InvalidArgument) as info:
        known_network("bridge")
    assert "not a network policy warden knows" in str(info.value)
    assert "'none'" in info.value.allowed


def test_good_specs_are_kept():
    spec = SandboxSpec(limits=Limits(memory_mb=64), labels={"tenant": "a", "plugin": "p"})
    assert spec.labels == {"tenant": "a", "plugin": "p"}
    assert all(SandboxSpec(network=p).network == p for p in NETWORK_POLICIES)
