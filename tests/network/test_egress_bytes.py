"""Egress byte counts: each ExecResult has the bytes relayed while its command ran, the
sandbox has its total, and an Engine's metrics have its plugins' bytes."""

from __future__ import annotations

import http.server
import re
import sys
import threading

import warden

from tests.network.conftest import inside
from tests.network.world import API
from tests.plugins.test_plugins import make_plugin, native_ok

FETCH = ("import urllib.request as u, sys; n = len(u.urlopen(sys.argv[1], timeout=10).read());"
         " print(n)")


def _policy(world) -> warden.NetworkPolicy:
    return warden.NetworkPolicy(allow=["api.test:8080"], resolve={"api.test": API},
                                egress_netns=world.path)


def test_each_exec_has_its_own_egress_bytes_and_the_sandbox_its_total(world):
    with warden.Sandbox(network=_policy(world)) as sb:
        big = sb.exec([sys.executable, "-I", "-c", FETCH, "http://api.test:8080/big/200000"])
        small = sb.exec([sys.executable, "-I", "-c", FETCH, "http://api.test:8080/small"])
        quiet = sb.exec(["/bin/true"])
        total = sb.egress_bytes()
        log = sb.network_log()
    assert big.stdout == b"200000\n" and big.egress_bytes_down > 200000
    assert 0 < big.egress_bytes_up < 1000
    assert 0 < small.egress_bytes_down < 1000 and small.egress_bytes_up > 0
    assert (quiet.egress_bytes_up, quiet.egress_bytes_down) == (0, 0)
    assert total == (sum(e.bytes_up for e in log), sum(e.bytes_down for e in log))
    assert total == (big.egress_bytes_up + small.egress_bytes_up,
                     big.egress_bytes_down + small.egress_bytes_down)


def test_warden_run_and_network_none_report_theirs(world):
    res = warden.run([sys.executable, "-I", "-c", FETCH, "http://api.test:8080/big/5000"],
                     network=_policy(world))
    assert res.stdout == b"5000\n" and res.egress_bytes_down > 5000
    with warden.Sandbox() as sb:
        assert "error" in inside(sb, "connect", "api.test", 8080)
        res = sb.exec(["/bin/true"])
        assert (res.egress_bytes_up, res.egress_bytes_down, sb.egress_bytes()) == (0, 0, (0, 0))


PLUGIN = """
    import socket

    def handle(action, port):
        s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
        s.sendall(("GET http://127.0.0.1:%d/ HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\n\\r\\n"
                   % (port, port)).encode())
        got = b""
        while True:
            data = s.recv(65536)
            if not data:
                return len(got)
            got += data
"""


def test_an_engine_counts_its_plugins_egress_bytes(tmp_path):
    native_ok()

    class Big(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "50000")
            self.end_headers()
            self.wfile.write(b"y" * 50000)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Big)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    # A CIDR rule wholly inside loopback opens exactly that address and port.
    d = make_plugin(tmp_path, "netb", PLUGIN, allowed_imports=["socket"],
                    network={"allow": [f"127.0.0.1/32:{port}"]})
    engine = warden.Engine()
    try:
        p = engine.load(d)
        assert p.call("get", port) > 50000
        assert p.call("get", port) > 50000
        text = engine.metrics_text()
    finally:
        engine.close()
        srv.shutdown()
        srv.server_close()
    got = dict(re.findall(r'^warden_egress_bytes_total\{plugin="netb",direction="(\w+)"\} (\S+)$',
                          text, re.MULTILINE))
    assert float(got["down"]) > 100000 and float(got["up"]) > 0
