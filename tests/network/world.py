"""A test's own world: a network namespace made by the test, with HTTP servers on its
loopback and on 203.0.113.10 (TEST-NET-3, held on the world's own loopback, never routed on
the host). Sandboxes reach it only through egress_netns. Nothing else is touched: no bridge,
no route, no address on the host."""

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
_SEQ = itertools.count(1)


def require_world() -> None:
    require(os.geteuid() == 0, "making a network namespace needs root")
    require(shutil.which("ip") is not None, "making a network namespace needs ip(8)")


class Server:
    """An HTTP server in the world that records what reached it."""

    def __init__(self, world: World, addr: str, port: int, label: str,
                 tls: ssl.SSLContext | None = None) -> None:
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
        sock = netns.in_netns(world.fd, make)
        self.httpd.socket = sock if tls is None else tls.wrap_socket(sock, server_side=True)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class World:
    def __init__(self) -> None:
        self.name = f"warden-world-{os.getpid()}-{next(_SEQ)}"
        self.path = f"/run/netns/{self.name}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
            subprocess.run(["ip", "-n", self.name, "addr", "add", f"{PUBLIC}/32", "dev", "lo"],
                           check=True)
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            subprocess.run(["ip", "netns", "del", self.name], check=False)
            raise
        self.servers: list[Server] = []

    def server(self, addr: str, port: int, label: str,
               tls: ssl.SSLContext | None = None) -> Server:
        s = Server(self, addr, port, label, tls)
        self.servers.append(s)
        return s

    def close(self) -> None:
        for s in self.servers:
            s.close()
        os.close(self.fd)
        subprocess.run(["ip", "netns", "del", self.name], check=True)
