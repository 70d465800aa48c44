"""The Docker provider gives a NetworkPolicy in proxy mode through the same egress proxy:
its container keeps --network none, and the proxy listens inside the container's own
network namespace."""

from __future__ import annotations

import pytest
import warden

from tests.conftest import require
from tests.network.conftest import inside, world_with_servers
from tests.network.world import API, require_world


@pytest.fixture(scope="module")
def world():
    yield from world_with_servers()


@pytest.fixture(scope="module")
def docker_provider(docker_engine):
    # The provider suite's engine (tests/providers/conftest.py): one private dockerd a run.
    require_world()
    require(docker_engine.available, docker_engine.why)
    return "docker"


def _policy(world, **kw) -> warden.NetworkPolicy:
    base = dict(allow=["api.test:8080"], resolve={"api.test": API},
                egress_netns=world.path)
    base.update(kw)
    return warden.NetworkPolicy(**base)


def test_a_container_goes_out_through_its_proxy_under_its_policy(world, docker_provider):
    with warden.Sandbox(provider=docker_provider, network=_policy(world)) as sb:
        assert inside(sb, "env")["HTTP_PROXY"] == "http://127.0.0.1:3128"
        assert inside(sb, "http_get", "http://api.test:8080/docker")["status"] == 200
        assert inside(sb, "socks", "api.test", 8080)["body"].endswith("api:/via-socks")
        assert inside(sb, "http_get", "http://other.test:8081/no")["status"] == 403
        log = sb.network_log()
        total = sb.egress_bytes()
    assert [(e.host, e.allowed, e.rule) for e in log] == [
        ("api.test", True, "allow api.test:8080"), ("api.test", True, "allow api.test:8080"),
        ("other.test", False, "no rule allows it")]
    assert total[1] > 0 and world.api.seen[-1][1] == "/via-socks"


def test_what_docker_cannot_give_is_refused_by_name(world, docker_provider):
    for kw, missing in (({"mode": "transparent"}, "NetworkPolicy(mode='transparent')"),
                        ({"inject": {"api.test": {"Authorization": "Bearer s3cret"}}},
                         "credential injection")):
        with pytest.raises(warden.ProviderUnavailable) as info:
            warden.Sandbox(provider=docker_provider, network=_policy(world, **kw))
        assert missing in str(info.value) and "s3cret" not in str(info.value)
