"""Proxy mode from inside real sandboxes, against servers in a namespace the test made: what
the policy allows arrives, everything else is refused at the proxy, logged, and never reaches
a server."""

from __future__ import annotations

import pytest
import warden
from warden.host.net import resolve

from tests.network.conftest import inside
from tests.network.world import API, PUBLIC


def policy(world, **kw) -> warden.NetworkPolicy:
    base = dict(allow=["api.test:8080", "public.test:80", "rebind.test:80"],
                resolve={"api.test": API, "evil.test": API},
                egress_netns=world.path)
    base.update(kw)
    return warden.NetworkPolicy(**base)


@pytest.fixture
def box(world):
    with warden.Sandbox(network=policy(world)) as sb:
        yield sb


def test_the_sandbox_is_told_where_its_proxy_is(box):
    env = inside(box, "env")
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://127.0.0.1:3128"
    assert env["ALL_PROXY"] == "socks5h://127.0.0.1:3128"
    assert "127.0.0.1" in env["NO_PROXY"]


def test_an_allowed_name_works_over_http_connect_and_socks5(world, box):
    # As any HTTP client finds it: through the environment's proxy variables.
    assert inside(box, "http_get", "http://api.test:8080/plain", "env") == {
        "status": 200, "body": "api:/plain"}
    got = inside(box, "connect", "api.test", 8080)
    assert got["body"].endswith("api:/via-connect")
    got = inside(box, "socks", "api.test", 8080)
    assert got["body"].endswith("api:/via-socks")
    log = box.network_log()
    assert [(e.via, e.host, e.port, e.address, e.allowed, e.rule) for e in log] == [
        (via, "api.test", 8080, API, True, "allow api.test:8080")
        for via in ("http", "connect", "socks5")]
    assert all(e.bytes_down > 0 and e.bytes_up > 0 and not e.open for e in log)


@pytest.mark.parametrize(("how", "target", "rule"), [
    ("a name no rule allows", "evil.test:8080", "no rule allows it"),
    ("a bare address", f"{PUBLIC}:80", "no rule allows it"),
    ("another port of an allowed name", "api.test:8081", "no rule allows it"),
    ("the cloud metadata address", "169.254.169.254:80",
     "always denied: link-local (cloud metadata) 169.254.0.0/16"),
    ("a loopback address", "127.0.0.1:8080", "always denied: loopback 127.0.0.0/8"),
])
def test_what_the_policy_does_not_allow_is_refused_and_logged(world, box, how, target, rule):
    host, port = target.rsplit(":", 1)
    before = [len(s.seen) for s in world.servers]
    assert inside(box, "http_get", f"http://{target}/x")["status"] == 403
    assert "reply" in inside(box, "connect", host, port)
    assert inside(box, "socks", host, port) == {"socks_reply": 2}
    assert [len(s.seen) for s in world.servers] == before, how
    log = box.network_log()
    assert [(e.host, e.port, e.allowed, e.rule) for e in log] == [
        (host, int(port), False, rule)] * 3
    assert all(e.bytes_up == e.bytes_down == 0 for e in log)


def test_a_name_resolving_to_a_private_address_is_refused(world, monkeypatch):
    # Not pinned: resolved on the host side, and the answer is a private address.
    monkeypatch.setattr(resolve, "lookup", lambda name: ["10.1.2.3"])
    with warden.Sandbox(network=policy(world, allow=["intranet.test:80"])) as sb:
        assert inside(sb, "http_get", "http://intranet.test/")["status"] == 403
        (entry,) = sb.network_log()
    assert (entry.address, entry.rule) == ("10.1.2.3", "always denied: private (RFC 1918) "
                                           "10.0.0.0/8")


def test_dns_rebinding_cannot_reach_a_private_address(world, monkeypatch):
    # Each lookup answers differently: first the public server, then loopback. The address
    # dialled is the one checked, so the first request reaches the public server and the
    # second is refused; a proxy that resolved again to dial would reach loopback.
    answers = iter([[PUBLIC], ["127.0.0.1"], ["127.0.0.1"], ["127.0.0.1"]])
    monkeypatch.setattr(resolve, "lookup", lambda name: next(answers))
    before = len(world.api.seen)
    with warden.Sandbox(network=policy(world)) as sb:
        assert inside(sb, "http_get", "http://rebind.test/") == {
            "status": 200, "body": "public:/"}
        assert inside(sb, "http_get", "http://rebind.test/")["status"] == 403
        log = sb.network_log()
    assert [(e.address, e.allowed) for e in log] == [(PUBLIC, True), ("127.0.0.1", False)]
    assert log[1].rule == "always denied: loopback 127.0.0.0/8"
    assert len(world.api.seen) == before


def test_a_name_nobody_allows_is_never_resolved(world, box, monkeypatch):
    asked = []
    monkeypatch.setattr(resolve, "lookup", lambda name: asked.append(name) or [PUBLIC])
    assert inside(box, "http_get", "http://exfiltrate-this.evil.test/")["status"] == 403
    assert asked == []


SMUGGLING = {
    "absolute URL to a denied host": (
        "GET http://evil.test:8080/x HTTP/1.1\r\nHost: evil.test:8080\r\n\r\n",
        "403", ("evil.test", 8080, "no rule allows it")),
    "Host header disagreeing with the CONNECT target": (
        "CONNECT api.test:8080 HTTP/1.1\r\nHost: evil.test:8080\r\n\r\n",
        "403", ("api.test", 8080, "the Host header disagrees with the request's target")),
    "Host header disagreeing with the absolute URL": (
        "GET http://api.test:8080/x HTTP/1.1\r\nHost: evil.test:8080\r\n\r\n",
        "403", ("api.test", 8080, "the Host header disagrees with the request's target")),
    "CONNECT to an allowed name on a denied port": (
        "CONNECT api.test:8081 HTTP/1.1\r\nHost: api.test:8081\r\n\r\n",
        "403", ("api.test", 8081, "no rule allows it")),
    "Content-Length with Transfer-Encoding": (
        "POST http://api.test:8080/x HTTP/1.1\r\nHost: api.test:8080\r\nContent-Length: 4\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400", None),
    "an origin-form request": ("GET /x HTTP/1.1\r\nHost: api.test:8080\r\n\r\n", "400", None),
    "user information in the URL": (
        "GET http://api.test:8080@evil.test/ HTTP/1.1\r\n\r\n", "400", None),
    "two Host headers": (
        "GET http://api.test:8080/ HTTP/1.1\r\nHost: api.test:8080\r\nHost: evil.test\r\n\r\n",
        "400", None),
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
def test_request_smuggling_through_the_proxy_is_refused(world, box, case):
    request, status, logged = SMUGGLING[case]
    before = [len(s.seen) for s in world.servers]
    reply = inside(box, "raw", request)["reply"]
    assert reply.startswith(f"HTTP/1.1 {status} ")
    assert [len(s.seen) for s in world.servers] == before
    log = [(e.host, e.port, e.rule) for e in box.network_log() if not e.allowed]
    assert log == ([logged] if logged else [])
