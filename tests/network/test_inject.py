"""Credential injection: headers set by warden's proxy on requests to named hosts, over plain
HTTP and over HTTPS (TLS ended with the sandbox's own CA and opened again to the host, which
is verified), absent from everything the sandbox can read."""

from __future__ import annotations

import os
import secrets
import sys

import pytest
import warden
from warden.host import state
from warden.providers.native import prepare

from tests.network.certs import WorldCA
from tests.network.conftest import inside
from tests.network.world import API, World, require_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_world()
    w = World()
    w.ca = WorldCA(tmp_path_factory.mktemp("world-ca"))
    w.api = w.server(API, 8443, "api-tls", w.ca.server_context("api.test"))
    w.plain = w.server(API, 8080, "api")
    w.other = w.server(API, 8444, "other-tls", w.ca.server_context("other.test"))
    yield w
    w.close()


def _policy(world, token: str, **kw) -> warden.NetworkPolicy:
    base = dict(allow=["api.test:8443", "api.test:8080", "other.test:8444"],
                resolve={"api.test": API, "other.test": API},
                egress_netns=world.path, upstream_ca=str(world.ca.path),
                inject={"api.test": {"Authorization": f"Bearer {token}", "X-Org": "acme"}})
    base.update(kw)
    return warden.NetworkPolicy(**base)


def _last(server) -> dict[str, str]:
    return {k.lower(): v for k, v in server.seen[-1][2].items()}


def test_injected_headers_arrive_over_https_and_the_secret_is_nowhere_inside(world):
    token = secrets.token_hex(16)
    with warden.Sandbox(network=_policy(world, token)) as sb:
        # The sandbox's own Authorization is replaced, not sent beside warden's.
        got = inside(sb, "https_get", "https://api.test:8443/inject", "", "Bearer mine")
        assert got == {"status": 200, "body": "api-tls:/inject"}
        seen = _last(world.api)
        assert seen["authorization"] == f"Bearer {token}" and seen["x-org"] == "acme"
        assert list(world.api.seen[-1][2]).count("Authorization") == 1
        found = inside(sb, "search", token[:16], token[16:])
        log = sb.network_log()
    assert found["found"] == [] and found["memory_of"] >= 1
    assert (log[0].via, log[0].allowed, log[0].rule) == ("connect", True, "allow api.test:8443")
    assert log[0].bytes_up > 0 and log[0].bytes_down > 0
    assert all(token not in repr(e) for e in log)


def test_a_request_body_goes_through_the_ended_tls(world):
    token = secrets.token_hex(16)
    body = "b" * 200_000
    with warden.Sandbox(network=_policy(world, token)) as sb:
        got = inside(sb, "https_post", "https://api.test:8443/echo", len(body))
        log = sb.network_log()
    assert got == {"status": 200, "body": body}
    assert world.api.seen[-1][:2] == ("POST", "/echo")
    assert _last(world.api)["authorization"] == f"Bearer {token}"
    assert log[0].bytes_up > len(body) and log[0].bytes_down > len(body)


def test_plain_http_requests_get_the_headers_too(world):
    token = secrets.token_hex(16)
    with warden.Sandbox(network=_policy(world, token)) as sb:
        assert inside(sb, "http_get", "http://api.test:8080/plain")["status"] == 200
    assert _last(world.plain)["authorization"] == f"Bearer {token}"


def test_a_host_not_named_gets_no_header_and_its_tls_is_not_touched(world):
    token = secrets.token_hex(16)
    with warden.Sandbox(network=_policy(world, token)) as sb:
        sb.files.write("world-ca.pem", world.ca.path.read_bytes())
        # Trusting the world's CA alone: the certificate is the host's own, not warden's.
        got = inside(sb, "https_get", "https://other.test:8444/blind", "/workspace/world-ca.pem")
        assert got == {"status": 200, "body": "other-tls:/blind"}
        # And an injected host's is warden's: the world's CA alone does not verify it.
        got = inside(sb, "https_get", "https://api.test:8443/x", "/workspace/world-ca.pem")
        assert "CERTIFICATE_VERIFY_FAILED" in got["error"]
    assert "authorization" not in _last(world.other)


def test_the_trust_store_is_read_only_and_only_there_when_asked_for(world):
    token = secrets.token_hex(16)
    code = ("import os; p = os.environ['SSL_CERT_FILE']; print(p, open(p).read().count("
            "'BEGIN CERTIFICATE') > 0)\ntry:\n    open(p, 'a')\nexcept OSError as e:\n"
            "    print(e.errno)")
    with warden.Sandbox(network=_policy(world, token)) as sb:
        res = sb.exec([sys.executable, "-I", "-c", code])
    path, has_certs, err = res.stdout.decode().split()
    assert (path, has_certs) == ("/etc/warden/ca-bundle.pem", "True")
    assert err in ("13", "30")  # EACCES or EROFS: either way, not writable
    with warden.Sandbox(network=_policy(world, token, inject=None)) as sb:
        assert "SSL_CERT_FILE" not in sb.exec(["/usr/bin/env"]).stdout.decode()


def test_a_server_name_other_than_the_target_is_refused(world):
    token = secrets.token_hex(16)
    n = len(world.api.seen)
    with warden.Sandbox(network=_policy(world, token)) as sb:
        got = inside(sb, "tls_tunnel", "api.test", 8443, "other.test",
                     "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n")
        assert got == {"error": "SSLError"}
        # A Host header that disagrees with the tunnel's target, inside good TLS.
        got = inside(sb, "tls_tunnel", "api.test", 8443, "api.test",
                     "GET / HTTP/1.1\r\nHost: other.test:8444\r\n\r\n")
        assert got["reply"].startswith("HTTP/1.1 403")
        log = sb.network_log()
    assert len(world.api.seen) == n
    assert [e.rule for e in log] == [
        "allow api.test:8443 (the sandbox's TLS handshake failed (a server name other than "
        "the target?))",
        "allow api.test:8443 (refused in the tunnel: the Host header disagrees with the "
        "tunnel's target)"]


def test_a_host_whose_certificate_does_not_verify_gets_no_request(world):
    token = secrets.token_hex(16)
    n = len(world.api.seen)
    with warden.Sandbox(network=_policy(world, token, upstream_ca=None)) as sb:
        got = inside(sb, "https_get", "https://api.test:8443/unverified")
        assert got["status"] == 502
        assert sb.network_log()[-1].rule.endswith("(the host's certificate did not verify)")
    assert len(world.api.seen) == n


def test_inject_needs_the_ca_made_with_the_sandbox(world):
    token = secrets.token_hex(16)
    with warden.Sandbox(network=_policy(world, token, inject=None)) as sb, \
            pytest.raises(warden.InvalidArgument) as info:
        sb.set_network(_policy(world, token))
    assert token not in str(info.value)


def test_a_missing_cryptography_package_is_named_with_its_install_hint(monkeypatch):
    from warden.host.net import tls

    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(warden.ProviderUnavailable) as info:
        tls.CertAuthority()
    assert "pip install 'warden[inject]'" in str(info.value)


def test_the_search_finds_a_secret_that_is_inside(world):
    # The control for the search above: the same search finds a token given to the sandbox.
    token = secrets.token_hex(16)
    with warden.Sandbox(env={"GIVEN": token}) as sb:
        found = inside(sb, "search", token[:16], token[16:])
    assert found["found"]


def _warden_tmp() -> set[str]:
    return {n for n in os.listdir("/tmp") if n.startswith(("warden-ca-", "warden-leaf-"))}


def test_the_trust_store_lies_in_warden_s_area_and_goes_with_the_sandbox(world):
    area = state.areas().path
    prepare.preparer().drain()
    before, tmp_before = set(os.listdir(area)), _warden_tmp()
    with warden.Sandbox(network=_policy(world, secrets.token_hex(16))) as sb:
        made = set(os.listdir(area)) - before
        (ca_dir,) = [n for n in made if n.startswith("ca-")]
        bundle = os.path.join(area, ca_dir, "ca-bundle.pem")
        # What the sandbox trusts is that file, bound read-only.
        with open(bundle, "rb") as f:
            assert sb.exec(["cat", "/etc/warden/ca-bundle.pem"]).stdout == f.read()
        # A leaf certificate is made for the host (its key never touches a file system).
        assert inside(sb, "https_get", "https://api.test:8443/area", "")["status"] == 200
    prepare.preparer().drain()
    assert not os.path.exists(os.path.join(area, ca_dir))
    assert set(os.listdir(area)) == before
    assert _warden_tmp() == tmp_before
