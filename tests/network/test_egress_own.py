"""The egress namespace's own addresses are the namespace itself, not the world: the proxy
refuses them whatever allowed them (a name, a pin, a wide CIDR), unless a CIDR rule names
them, and it asks the kernel at each dial, so an address added later is refused too."""

from __future__ import annotations

import subprocess

import pytest
import warden

from tests.network.conftest import inside
from tests.network.world import API, EDGE, World, require_world

OWN = "always denied: an address of the egress namespace itself"


@pytest.fixture(scope="module")
def edge_world():
    require_world()
    w = World()
    w.edge = w.server(EDGE, 8090, "edge")
    yield w
    w.close()


@pytest.mark.parametrize(("how", "kw"), [
    ("an allowed name pinned to it", dict(allow=["edge.test:8090"],
                                          resolve={"edge.test": EDGE})),
    ("an allowed name resolving to it", dict(allow=["edge.test:8090"])),
    ("the whole internet", dict(allow=["0.0.0.0/0:8090"])),
    ("a range around it", dict(allow=["198.18.0.0/15:8090"])),
])
def test_the_egress_namespace_s_own_address_is_refused(edge_world, monkeypatch, how, kw):
    from warden.host.net import resolve

    monkeypatch.setattr(resolve, "lookup", lambda name: [EDGE])
    host = "edge.test" if "edge.test" in str(kw) else EDGE
    before = len(edge_world.edge.seen)
    with warden.Sandbox(network=warden.NetworkPolicy(egress_netns=edge_world.path,
                                                     **kw)) as sb:
        assert inside(sb, "http_get", f"http://{host}:8090/x")["status"] == 403, how
        log = sb.network_log()
    assert len(edge_world.edge.seen) == before, how
    assert [(e.address, e.allowed, e.rule) for e in log] == [(EDGE, False, OWN)]


def test_a_cidr_rule_naming_the_address_opens_it(edge_world):
    policy = warden.NetworkPolicy(allow=[f"{EDGE}:8090"], egress_netns=edge_world.path)
    with warden.Sandbox(network=policy) as sb:
        got = inside(sb, "http_get", f"http://{EDGE}:8090/named")
        log = sb.network_log()
    assert got == {"status": 200, "body": "edge:/named"}
    assert [(e.allowed, e.rule) for e in log] == [(True, f"allow {EDGE}:8090")]


def test_an_address_the_namespace_gains_later_is_refused_from_then_on(edge_world):
    # 198.51.100.77 lies in the net, so at first it is dialled there (nothing listens: the
    # dial is refused, but the policy allowed it). Then the edge takes it: the next dial is refused.
    late = "198.51.100.77"
    policy = warden.NetworkPolicy(allow=["198.51.100.0/24:8090"],
                                  egress_netns=edge_world.path)
    with warden.Sandbox(network=policy) as sb:
        assert inside(sb, "http_get", f"http://{late}:8090/a")["status"] == 502
        subprocess.run(["ip", "-n", edge_world.name, "addr", "add", f"{late}/32", "dev", "lo"],
                       check=True)
        try:
            before = len(edge_world.servers)
            edge_world.server(late, 8090, "late", edge=True)
            assert inside(sb, "http_get", f"http://{late}:8090/b")["status"] == 403
            assert edge_world.servers[before].seen == []
        finally:
            subprocess.run(["ip", "-n", edge_world.name, "addr", "del", f"{late}/32", "dev",
                            "lo"], check=True)
        log = sb.network_log()
    assert [(e.allowed, e.rule.split(" (")[0]) for e in log] == [
        (True, "allow 198.51.100.0/24:8090"), (False, OWN)]


def test_the_net_s_servers_are_not_own_addresses(edge_world):
    # The world's servers are somewhere else: a name allowed and resolved reaches them.
    edge_world.server(API, 8090, "api-8090")
    policy = warden.NetworkPolicy(allow=["api.test:8090"], resolve={"api.test": API},
                                  egress_netns=edge_world.path)
    with warden.Sandbox(network=policy) as sb:
        assert inside(sb, "http_get", "http://api.test:8090/y") == {
            "status": 200, "body": "api-8090:/y"}
