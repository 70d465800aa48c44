"""Transparent mode: a veth to a gateway namespace of warden's own, every TCP connection of
the sandbox decided by the policy engine, DNS answered by warden for allowed names only, and
nothing left behind."""

from __future__ import annotations

import os
import subprocess

import pytest
import warden
from warden.host.net import resolve
from warden.host.net.egress import egress
from warden.providers.native import prepare

from tests.network.certs import WorldCA
from tests.network.conftest import inside
from tests.network.world import PUBLIC, World, require_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_world()
    w = World()
    w.ca = WorldCA(tmp_path_factory.mktemp("world-ca"))
    w.web = w.server(PUBLIC, 80, "web")
    w.other = w.server(PUBLIC, 8081, "other")
    w.tls = w.server(PUBLIC, 443, "web-tls", w.ca.server_context("web.test"))
    yield w
    w.close()


def _policy(world, **kw) -> warden.NetworkPolicy:
    base = dict(mode="transparent", allow=["web.test:80", "web.test:443"],
                resolve={"web.test": PUBLIC, "other.test": PUBLIC}, egress_netns=world.path)
    base.update(kw)
    return warden.NetworkPolicy(**base)


def test_a_plain_socket_reaches_an_allowed_server(world):
    with warden.Sandbox(network=_policy(world)) as sb:
        assert inside(sb, "env") == {}  # no proxy variables: nothing to honour
        assert inside(sb, "getaddr", "web.test") == {"addresses": [PUBLIC]}
        got = inside(sb, "plain_get", "web.test", 80, "/plain")
        assert got["body"] == "web:/plain"
        log = sb.network_log()
    # A queries (getaddrinfo's, then create_connection's with its AAAA, answered empty).
    assert [(e.via, e.host, e.port, e.address, e.allowed, e.rule) for e in log
            if e.address is not None] == [
        ("dns", "web.test", 53, PUBLIC, True, "allow web.test:80"),
        ("dns", "web.test", 53, PUBLIC, True, "allow web.test:80"),
        ("transparent", "web.test", 80, PUBLIC, True, "allow web.test:80")]
    assert log[-1].bytes_up > 0 and log[-1].bytes_down > 0


def test_denied_names_get_nxdomain_are_logged_and_never_looked_up(world, monkeypatch):
    looked_up: list[str] = []
    real = resolve.lookup
    monkeypatch.setattr(resolve, "lookup", lambda name: looked_up.append(name) or real(name))
    with warden.Sandbox(network=_policy(world, deny=["bad.web.test"],
                                        allow=["web.test:80", "*.web.test"])) as sb:
        for name in ("evil.test", "bad.web.test", "a.b.c.d.exfil.evil.test"):
            assert inside(sb, "dns_rcode", name) == {"id": "1234", "rcode": 3, "answers": 0}
        # Whatever server the sandbox asks: the query reaches warden, and only warden.
        assert inside(sb, "dns_rcode", "evil.test", "198.51.100.53")["rcode"] == 3
        assert inside(sb, "dns_rcode", "evil.test", "127.0.0.1", 16)["rcode"] == 3  # TXT
        assert inside(sb, "getaddr", "evil.test") == {"gaierror": -2}  # EAI_NONAME
        # An allowed name: its A record; another type: an empty answer, not NXDOMAIN.
        assert inside(sb, "dns_rcode", "web.test")["answers"] == 1
        assert inside(sb, "dns_rcode", "web.test", "127.0.0.1", 16)["rcode"] == 0
        log = sb.network_log()
    refused = [(e.host, e.rule) for e in log if e.via == "dns" and not e.allowed]
    assert refused[:3] == [("evil.test", "no rule allows it"), ("bad.web.test",
                                                                 "deny bad.web.test"),
                           ("a.b.c.d.exfil.evil.test", "no rule allows it")]
    assert len(refused) == 6  # getaddrinfo asked once
    assert not any("evil" in n for n in looked_up)


def test_the_address_dialled_is_what_is_checked(world):
    with warden.Sandbox(network=_policy(world)) as sb:
        # No name given out for it: a bare address, which no rule here allows.
        assert inside(sb, "plain_get", PUBLIC, 80, "/bare")["reply"] == ""
        inside(sb, "getaddr", "web.test")
        # The name given out for it, on a port no rule allows.
        assert inside(sb, "plain_get", PUBLIC, 8081, "/port")["reply"] == ""
        # A Host header claiming a name not given out for the address.
        assert inside(sb, "plain_get", PUBLIC, 80, "/claim", "other.test")["reply"] == ""
        # The cloud metadata address and the gateway itself.
        for addr in ("169.254.169.254", "10.255.255.1"):
            assert inside(sb, "plain_get", addr, 80, "/")["reply"] == ""
        log = [(e.host, e.port, e.rule) for e in sb.network_log() if e.via == "transparent"]
    assert log == [
        (PUBLIC, 80, "no rule allows it"),
        ("web.test", 8081, "no rule allows it"),
        ("other.test", 80, "the name it claims (SNI or Host) was not given out for the "
                           "address dialled"),
        ("169.254.169.254", 80, "always denied: link-local (cloud metadata) 169.254.0.0/16"),
        ("10.255.255.1", 80, "always denied: private (RFC 1918) 10.0.0.0/8")]
    assert all(path not in str(world.web.seen) for path in ("/bare", "/claim"))


def test_tls_names_the_server_it_dials(world):
    with warden.Sandbox(network=_policy(world)) as sb:
        sb.files.write("world-ca.pem", world.ca.path.read_bytes())
        ca = "/workspace/world-ca.pem"
        inside(sb, "getaddr", "web.test")
        got = inside(sb, "tls_get", "web.test", 443, "web.test", ca)
        assert got["reply"].endswith("web-tls:/tls")
        # SNI naming a host whose name was not given out for this address.
        assert inside(sb, "tls_get", PUBLIC, 443, "other.test", ca)["error"] in (
            "SSLEOFError", "ConnectionResetError", "SSLZeroReturnError")
        log = [(e.host, e.allowed) for e in sb.network_log() if e.via == "transparent"]
    assert log == [("web.test", True), ("other.test", False)]


def test_leaving_transparent_mode_removes_the_link(world):
    with warden.Sandbox(network=_policy(world)) as sb:
        assert inside(sb, "links") == {"links": ["eth0", "lo"]}
        sb.set_network(_policy(world, mode="proxy"))
        assert inside(sb, "links") == {"links": ["lo"]}
        assert "error" in inside(sb, "plain_get", PUBLIC, 80, "/gone")


def _held() -> tuple[set[str], int]:
    """The network namespaces this process is in or holds open (the gateways are held by
    warden's descriptors and nothing else), and how many sockets it has."""
    links = []
    for d in ("/proc/self/fd", "/proc/self/task"):
        for entry in os.listdir(d):
            path = f"{d}/{entry}" if d.endswith("fd") else f"{d}/{entry}/ns/net"
            try:
                links.append(os.readlink(path))
            except OSError:
                pass
    return ({x for x in links if x.startswith("net:")},
            sum(x.startswith("socket:") for x in links))


def _host_links() -> list[str]:
    return subprocess.run(["ip", "-o", "link"], check=True, capture_output=True,
                          text=True).stdout.splitlines()


@pytest.mark.slow
def test_many_transparent_sandboxes_leave_no_veth_or_namespace(world):
    prepare.preparer().drain()
    links, (before, sockets) = _host_links(), _held()
    boxes = [warden.Sandbox(network=_policy(world)) for _ in range(50)]
    try:
        held = _held()[0] - before
        assert len(held) >= 100  # a gateway each, and the sandboxes' own
        for sb in boxes[::10]:
            assert inside(sb, "plain_get", "web.test", 80, "/many")["body"] == "web:/many"
        assert _host_links() == links  # the veth pairs are never in the host's namespace
    finally:
        for sb in boxes:
            sb.close()
    prepare.preparer().drain()
    assert _held() == (before, sockets)
    assert _host_links() == links
    assert egress().dialers() == 0


def test_a_name_that_resolves_to_a_private_address_gets_no_answer(world, monkeypatch):
    monkeypatch.setattr(resolve, "lookup", lambda name: ["10.1.2.3", "169.254.169.254"])
    with warden.Sandbox(network=_policy(world, allow=["*.rebind.test:80"])) as sb:
        assert inside(sb, "dns_rcode", "a.rebind.test")["rcode"] == 3
        log = sb.network_log()
    assert [(e.host, e.allowed, e.rule) for e in log] == [
        ("a.rebind.test", False, "no address of the name may be dialled")]


def test_headers_are_injected_for_a_plain_socket_too(world):
    import secrets

    token = secrets.token_hex(16)
    policy = _policy(world, upstream_ca=str(world.ca.path),
                     inject={"web.test": {"Authorization": f"Bearer {token}"}})
    with warden.Sandbox(network=policy) as sb:
        assert inside(sb, "plain_get", "web.test", 80, "/inj")["body"] == "web:/inj"
        assert world.web.seen[-1][2]["Authorization"] == f"Bearer {token}"
        # TLS on a plain socket: the sandbox trusts its own CA through SSL_CERT_FILE.
        got = inside(sb, "tls_get", "web.test", 443, "web.test", "/etc/warden/ca-bundle.pem")
        assert got["reply"].endswith("web-tls:/tls")
        assert world.tls.seen[-1][2]["Authorization"] == f"Bearer {token}"
        found = inside(sb, "search", token[:16], token[16:])
    assert found["found"] == []
