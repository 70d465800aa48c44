"""The network methods of a sandbox: set_network, expose, budgets, warden.run with a policy,
refusals of what is not built, and nothing left behind."""

from __future__ import annotations

import os
import socket
import sys
import threading
import urllib.request

import pytest
import warden
from warden.host.net.egress import egress
from warden.providers.native import prepare

from tests.network.conftest import inside
from tests.network.world import API, require_world
from tests.plugins.test_plugins import native_ok


def policy(world, **kw) -> warden.NetworkPolicy:
    base = dict(allow=["api.test:8080"], resolve={"api.test": API},
                egress_netns=world.path)
    base.update(kw)
    return warden.NetworkPolicy(**base)


def test_set_network_applies_to_new_connections(world):
    with warden.Sandbox() as sb:
        # network="none": no proxy at all inside.
        assert "error" in inside(sb, "connect", "api.test", 8080)
        sb.set_network(policy(world))
        assert inside(sb, "http_get", "http://api.test:8080/on")["status"] == 200
        sb.set_network(policy(world, allow=["other.test:80"]))
        assert inside(sb, "http_get", "http://api.test:8080/off")["status"] == 403
        sb.set_network("none")
        assert "error" in inside(sb, "connect", "api.test", 8080)
        assert [(e.allowed, e.rule) for e in sb.network_log()] == [
            (True, "allow api.test:8080"), (False, "no rule allows it")]


SERVE = '''
def serve(_):
    import http.server, threading
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"served from inside " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 8000), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return "listening"
'''


def _get(where: str, path: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{where}{path}", timeout=10) as r:
        return r.read()


def test_expose_serves_a_page_from_a_server_inside():
    require_world()
    with warden.Sandbox() as sb:
        assert sb.call(SERVE) == "listening"
        where = sb.expose(8000)
        host, port = where.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert _get(where, "/page") == b"served from inside /page"
        assert sb.expose(8000) == where
        sb.unexpose(8000)
        with pytest.raises(OSError):
            _get(where, "/page")
        where = sb.expose(8000)
    # Gone with the sandbox.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(where.split(":")[1])), timeout=5)


def test_expose_refuses_a_port_that_is_not_one():
    with warden.Sandbox() as sb, pytest.raises(warden.InvalidArgument):
        sb.expose(70000)


def test_the_connection_budget_stops_a_sandbox_at_its_limit(world):
    with warden.Sandbox(network=policy(world, max_connections=2)) as sb:
        assert inside(sb, "hold", 4, "api.test", 8080) == {"accepted": 2}
        refused = [e for e in sb.network_log() if not e.allowed]
        assert [e.rule for e in refused] == ["max_connections limit of 2 reached"] * 2
        # Once those are closed, the sandbox may connect again.
        assert inside(sb, "http_get", "http://api.test:8080/again")["status"] == 200


def test_the_byte_budget_stops_a_sandbox_at_its_limit(world):
    cap = 100_000
    with warden.Sandbox(network=policy(world, max_bytes=cap)) as sb:
        got = inside(sb, "connect", "api.test", 8080)
        assert got["body"].endswith("api:/via-connect")
        big = inside(sb, "raw", "GET http://api.test:8080/big/1000000 HTTP/1.1\r\n"
                                "Host: api.test:8080\r\n\r\n")
        assert len(big["reply"]) < cap
        assert inside(sb, "http_get", "http://api.test:8080/after")["status"] == 403
        log = sb.network_log()
    assert sum(e.bytes_up + e.bytes_down for e in log) <= cap
    assert log[-1].rule == f"max_bytes budget of {cap} spent"


def test_warden_run_takes_a_policy(world):
    code = ("import urllib.request as u; print(u.urlopen('http://api.test:8080/run', "
            "timeout=10).read().decode())")
    res = warden.run([sys.executable, "-I", "-c", code], network=policy(world))
    assert (res.exit_code, res.stdout) == (0, b"api:/run\n")


def test_the_host_loopback_is_refused_without_an_egress_namespace():
    require_world()
    # A server on the loopback of the namespace warden itself runs in.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    reached = []
    threading.Thread(target=lambda: reached.append(srv.accept()), daemon=True).start()
    try:
        with warden.Sandbox(network=warden.NetworkPolicy(allow=["*"])) as sb:
            assert inside(sb, "http_get", f"http://localhost:{port}/")["status"] == 403
            assert inside(sb, "socks", "127.0.0.1", port) == {"socks_reply": 2}
            log = sb.network_log()
        assert [(e.address, e.rule) for e in log] == [
            ("127.0.0.1", "always denied: loopback 127.0.0.0/8")] * 2
        assert reached == []
    finally:
        srv.close()


def test_an_egress_namespace_that_is_not_one_fails_the_sandbox(tmp_path):
    require_world()
    bogus = tmp_path / "not-a-netns"
    bogus.write_text("")
    with pytest.raises(warden.SandboxSetupError) as info:
        warden.Sandbox(network=warden.NetworkPolicy(allow=["*"], egress_netns=str(bogus)))
    assert info.value.step == "egress network namespace"


def _net_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith(("net:", "socket:"))
        except OSError:
            pass
    return n


@pytest.mark.slow
def test_many_sandboxes_with_policies_leave_nothing_behind(world):
    prepare.preparer().drain()
    before = _net_fds()
    boxes = [warden.Sandbox(network=policy(world, max_connections=4)) for _ in range(50)]
    try:
        for sb in boxes[::10]:
            assert inside(sb, "http_get", "http://api.test:8080/many")["status"] == 200
    finally:
        for sb in boxes:
            sb.close()
    prepare.preparer().drain()
    assert _net_fds() == before
    assert egress().dialers() == 0


def test_run_with_a_policy_caps_output_as_asked():
    native_ok()
    r = warden.run(["sh", "-c", "head -c 300000 /dev/zero"],
                   network=warden.NetworkPolicy(allow=["example.com:443"]),
                   max_output_bytes=100_000)
    assert r.exit_code == 0 and len(r.stdout) == 100_000
    assert r.stdout_truncated and r.stdout_dropped == 200_000
