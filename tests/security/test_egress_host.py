"""The egress proxy dials from the host's own network namespace: an address the host itself
holds is the host, not the internet, whatever range it lies in. A policy that allows "the
internet" on a port must not let a sandbox reach a service the host runs on that port."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import threading

import warden
from warden.host.net.rules import ALWAYS_DENIED

from tests.conftest import require
from tests.network.conftest import inside


def _own_address() -> str | None:
    """An IPv4 address of one of the host's own interfaces, not loopback."""
    try:
        out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for link in json.loads(out):
        for a in link.get("addr_info", []):
            if not a["local"].startswith("127."):
                return a["local"]
    return None


def _rule_covering(addr: str, port: int) -> str:
    """The broadest rule an operator writes for "anywhere on this port" that covers ``addr``:
    the whole internet, or the private range it is in (an intranet allowed on purpose)."""
    ip = ipaddress.ip_address(addr)
    for net, _label in ALWAYS_DENIED:
        if ip.version == net.version and ip in net:
            return f"{net}:{port}"
    return f"0.0.0.0/0:{port}"


def test_a_sandbox_cannot_reach_the_host_s_own_service_through_its_proxy():
    addr = _own_address()
    require(addr is not None, "the host has no non-loopback IPv4 address")
    assert addr is not None
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((addr, 0))
    srv.listen(8)
    srv.settimeout(20)
    port = srv.getsockname()[1]
    reached: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                reached.append(conn.recv(100))
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nhost")
            except OSError:
                reached.append(b"")

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        policy = warden.NetworkPolicy(allow=[_rule_covering(addr, port)])
        with warden.Sandbox(network=policy) as sb:
            got = inside(sb, "connect", addr, port)
            log = sb.network_log()
    finally:
        srv.close()
        t.join(25)
    assert reached == [], f"the host's own service at {addr}:{port} was reached"
    assert "host" not in got.get("body", "")
    assert [(e.allowed, e.address, e.rule) for e in log] == [
        (False, addr, "always denied: an address of the egress namespace itself")]

