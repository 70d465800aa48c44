"""One tenant's slow name lookups through the egress proxy must not stall another tenant's
connections or lookups: each sandbox has its own resolver slots (egress.RESOLVER_SLOTS), held
until the lookup's thread is done with it, and a lookup never waits for a thread another
sandbox's lookup holds (netns.Dialer starts one), nor for the thread sockets are made on."""

from __future__ import annotations

import threading
import time

import pytest
import warden
from warden.host.net import egress, resolve

from tests.network.conftest import inside
from tests.network.world import PUBLIC, World, require_world

# Two lookups at once in each hostile sandbox (its resolver slots), left in the background:
# the command returns at once, its clients wait on the proxy.
LOOKUPS = ("for n in 1 2; do (python3 -I /workspace/client.py connect slow-$n-{tag}.test 80 "
           ">/dev/null 2>&1 &) ; done")


@pytest.fixture
def world():
    require_world()
    w = World()
    w.public = w.server(PUBLIC, 80, "public")
    yield w
    w.close()


def test_slow_lookups_of_one_tenant_do_not_stall_another_tenant_s_connections(
        world, monkeypatch):
    release = threading.Event()
    started: list[str] = []

    def lookup(name: str) -> list[str]:
        if name.startswith("slow-"):
            started.append(name)
            release.wait(120)  # a resolver that does not answer (a blackholed zone)
            return []
        return [PUBLIC]

    monkeypatch.setattr(resolve, "lookup", lookup)
    monkeypatch.setattr(egress, "RESOLVE_TIMEOUT_S", 2.0)
    hostile = warden.NetworkPolicy(allow=["203.0.113.0/24:80"], egress_netns=world.path)
    benign = warden.NetworkPolicy(allow=[f"{PUBLIC}:80", "public.test:80"],
                                  egress_netns=world.path)
    try:
        with warden.Sandbox(network=hostile) as a1, warden.Sandbox(network=hostile) as a2, \
                warden.Sandbox(network=benign) as b:
            for tag, sb in (("a1", a1), ("a2", a2)):
                inside(sb, "env")  # puts client.py in its workspace
                r = sb.exec(["sh", "-c", LOOKUPS.format(tag=tag)])
                assert r.exit_code == 0, r.stderr
            deadline = time.monotonic() + 30
            while len(started) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(started) == 4, started
            got = inside(b, "connect", PUBLIC, 80)
            named = inside(b, "connect", "public.test", 80)
            # The hostile sandboxes' own further lookups wait for their own slots.
            late = inside(a1, "connect", "slow-3-a1.test", 80)
            assert len(started) == 4, started
            release.set()
    finally:
        release.set()
    assert got.get("body", "").endswith("public:/via-connect"), got
    assert named.get("body", "").endswith("public:/via-connect"), named
    assert "body" not in late, late
