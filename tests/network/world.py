"""A test's own world: two network namespaces made by the test, joined by a veth pair. The
*edge* (``World.path``) is where warden dials from (egress_netns); it holds EDGE on its end
of the link and routes TEST-NET-2 and TEST-NET-3 to the other end, the *net*, whose loopback
holds API (198.51.100.20) and PUBLIC (203.0.113.10), where the servers are. So the servers are
somewhere else, as the internet is: the edge's own addresses (EDGE, its loopback) are the
egress namespace itself, which warden refuses to dial unless a CIDR rule names them; a test
puts a server there with ``World.server(EDGE, ...)``. Sandboxes reach the world only through
egress_netns. Nothing else is touched: no bridge, no route, no address on the host."""

from __future__ import annotations

import http.server
import itertools
import os
import shutil
import socket
import ssl
import subprocess
import threading

from warden.host.net import netns

from tests.conftest import require

PUBLIC = "203.0.113.10"
API = "198.51.100.20"
EDGE = "198.18.0.1"  # the edge's end of the link; the net's end is 198.18.0.2
_SEQ = itertools.count(1)


def require_world() -> None:
    require(os.geteuid() == 0, "making a network namespace needs root")
    require(shutil.which("ip") is not None, "making a network namespace needs ip(8)")


class Server:
    """An HTTP server in the world that records what reached it."""

    def __init__(self, world: World, addr: str, port: int, label: str,
                 tls: ssl.SSLContext | None = None, edge: bool = False) -> None:
        self.label = label
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(("POST", self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                seen.append(("GET", self.path, dict(self.headers)))
                size = int(self.path[5:]) if self.path.startswith("/big/") else 0
                body = b"x" * size if size else f"{label}:{self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(64)
            return s

        self.httpd = http.server.ThreadingHTTPServer((addr, port), Handler,
                                                     bind_and_activate=False)
        self.httpd.socket.close()
        edge = edge or addr == EDGE or addr.startswith("127.")
        sock = netns.in_netns(world.fd if edge else world.net_fd, make)
        self.httpd.socket = sock if tls is None else tls.wrap_socket(sock, server_side=True)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class World:
    def __init__(self) -> None:
        n = next(_SEQ)
        self.name = f"warden-world-{os.getpid()}-{n}"
        self.net_name = f"warden-net-{os.getpid()}-{n}"
        self.path = f"/run/netns/{self.name}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            subprocess.run(["ip", "netns", "add", self.net_name], check=True)
            _ip(self.name, "link set lo up")
            _ip(self.net_name, "link set lo up")
            _ip(self.name, f"link add wedge type veth peer name wnet netns {self.net_name}")
            _ip(self.name, f"addr add {EDGE}/30 dev wedge")
            _ip(self.net_name, "addr add 198.18.0.2/30 dev wnet")
            _ip(self.name, "link set wedge up")
            _ip(self.net_name, "link set wnet up")
            # The whole of both ranges is the net's own (a prefix on lo is local throughout):
            # an address of them where nothing listens refuses at once.
            for addr in (API, PUBLIC):
                _ip(self.net_name, f"addr add {addr}/24 dev lo")
            _ip(self.name, "route add 198.51.100.0/24 via 198.18.0.2")
            _ip(self.name, "route add 203.0.113.0/24 via 198.18.0.2")
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self.net_fd = os.open(f"/run/netns/{self.net_name}", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            subprocess.run(["ip", "netns", "del", self.name], check=False)
            subprocess.run(["ip", "netns", "del", self.net_name], check=False)
            raise
        self.servers: list[Server] = []

    def server(self, addr: str, port: int, label: str,
               tls: ssl.SSLContext | None = None, edge: bool = False) -> Server:
        """A server at ``addr``: in the net, or on the edge itself for EDGE, loopback and
        ``edge``."""
        s = Server(self, addr, port, label, tls, edge)
        self.servers.append(s)
        return s

    def close(self) -> None:
        for s in self.servers:
            s.close()
        os.close(self.fd)
        os.close(self.net_fd)
        subprocess.run(["ip", "netns", "del", self.name], check=True)
        subprocess.run(["ip", "netns", "del", self.net_name], check=True)


def _ip(ns: str, args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args.split()], check=True)
