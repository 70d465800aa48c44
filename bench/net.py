"""Network policy overhead: a request through a sandbox's egress proxy (HTTP forward and
CONNECT) and in transparent mode (a plain socket, redirected through the sandbox's gateway)
against the same request made directly inside the world namespace; the set-up of one
connection (TCP connect vs connect + CONNECT answered, vs a redirected connect); a 10 MB
download; and making a Sandbox with a policy (proxy, transparent, with credential injection)
against one without.

    python bench/net.py [--runs 300]      (root: it makes its own network namespace)

The world is a network namespace this script makes, with an HTTP server (a process of its own)
on its loopback, opened by a CIDR rule that names it (an egress namespace's own address); the
sandbox reaches it through NetworkPolicy(egress_netns=...). The direct peer is a client on a
host thread whose sockets were made in the world namespace. Both clients are Python.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

import warden
from warden.host.net import netns

PUBLIC = "203.0.113.10"

CLIENT = r'''
import json, socket, sys, time
mode, runs = sys.argv[1], int(sys.argv[2])
P = ("127.0.0.1", 3128)
def recv_all(s):
    out = b""
    while True:
        d = s.recv(1 << 20)
        if not d:
            return out
        out += d
T = None
if mode.startswith("t-"):
    T = (socket.getaddrinfo("api.test", 8080, socket.AF_INET)[0][4][0], 8080)
def request(path):
    if T is not None:
        s = socket.create_connection(T)
        s.sendall(b"GET " + path + b" HTTP/1.0\r\nHost: api.test:8080\r\n\r\n")
        n = len(recv_all(s))
        s.close()
        return n
    s = socket.create_connection(P)
    if mode == "connect":
        s.sendall(b"CONNECT api.test:8080 HTTP/1.1\r\n\r\n")
        while not s.recv(4096).endswith(b"\r\n\r\n"):
            pass
        s.sendall(b"GET " + path + b" HTTP/1.0\r\nHost: api.test\r\n\r\n")
    else:
        s.sendall(b"GET http://api.test:8080" + path + b" HTTP/1.0\r\nHost: api.test:8080\r\n\r\n")
    n = len(recv_all(s))
    s.close()
    return n
def setup():
    if T is not None:
        socket.create_connection(T).close()
        return
    s = socket.create_connection(P)
    s.sendall(b"CONNECT api.test:8080 HTTP/1.1\r\n\r\n")
    s.recv(4096)
    s.close()
out = []
for _ in range(runs):
    t = time.perf_counter()
    if mode in ("setup", "t-setup"):
        setup()
    else:
        request(b"/big/10000000" if mode in ("bulk", "t-bulk") else b"/x")
    out.append(time.perf_counter() - t)
print(json.dumps(out))
'''


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        size = int(self.path[5:]) if self.path.startswith("/big/") else 2
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(b"x" * size)

    def log_message(self, *a: object) -> None:
        pass


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def direct(world_fd: int, mode: str, runs: int) -> list[float]:
    def sock() -> socket.socket:
        return socket.socket()

    out = []
    for _ in range(runs):
        s = netns.in_netns(world_fd, sock)
        t = time.perf_counter()
        s.connect(("127.0.0.1", 8080))
        if mode != "setup":
            path = b"/big/10000000" if mode == "bulk" else b"/x"
            s.sendall(b"GET " + path + b" HTTP/1.0\r\nHost: api.test\r\n\r\n")
            while s.recv(1 << 20):
                pass
        out.append(time.perf_counter() - t)
        s.close()
    return out


def loop_cpu() -> float:
    """The CPU time warden's egress loop thread has used so far."""
    from concurrent.futures import Future

    from warden.host.net.egress import egress

    got: Future[float] = Future()
    egress().loop.call_soon_threadsafe(lambda: got.set_result(time.thread_time()))
    return got.result()


def line(label: str, proxied: list[float], plain: list[float]) -> None:
    a, b = statistics.median(proxied) * 1e3, statistics.median(plain) * 1e3
    print(f"{label:38s} warden p50 {a:8.3f} ms  p99 {pct(proxied, 99) * 1e3:8.3f} ms   "
          f"direct p50 {b:8.3f} ms   added {a - b:+7.3f} ms  ({a / b:4.1f}x)")


def creation(policy: warden.NetworkPolicy, runs: int, *,
             cold: bool = False) -> tuple[list[float], list[float]]:
    """Sandbox() with ``policy`` and with "none", alternately; ``cold``: none made ahead."""
    from warden.providers.native import prepare

    with_p: list[float] = []
    without: list[float] = []
    for _ in range(runs):
        for net, out in ((policy, with_p), ("none", without)):
            if cold:
                prepare.preparer().drain()
            t = time.perf_counter()
            sb = warden.Sandbox(network=net)
            out.append(time.perf_counter() - t)
            sb.close()
    return with_p, without


def transparent(fd: int, policy: warden.NetworkPolicy, runs: int) -> None:
    with warden.Sandbox(network=policy, limits=warden.Limits(wall_time_s=600)) as sb:
        sb.files.write("c.py", CLIENT)

        def inside(mode: str, n: int) -> list[float]:
            r = sb.exec([sys.executable, "-I", "/workspace/c.py", mode, str(n)], timeout=600)
            if r.exit_code != 0:
                raise SystemExit(f"client {mode}: {r.stderr.decode()[-2000:]}")
            return json.loads(r.stdout)

        line("request, transparent (plain socket)", inside("t-http", runs),
             direct(fd, "http", runs))
        line("connection set-up, transparent", inside("t-setup", runs),
             direct(fd, "setup", runs))
        bulk = max(3, runs // 30)
        line("10 MB download, transparent", inside("t-bulk", bulk), direct(fd, "bulk", bulk))


def creations(policies: dict[str, warden.NetworkPolicy], runs: int) -> None:
    for label, policy in policies.items():
        for cold in (False, True):
            with_p, without = creation(policy, runs, cold=cold)
            line(f"Sandbox() {label}, {'cold' if cold else 'warm'} ({runs})", with_p, without)
    print("  (creation lines: 'warden' = with that NetworkPolicy, 'direct' = network 'none'; "
          "warm: the next sandbox of a spec made ahead, cold: none made ahead)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    name = f"warden-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        # A TEST-NET-3 address on the world's loopback, for the transparent mode (a
        # sandbox's own 127.0.0.1 is its own loopback).
        subprocess.run(["ip", "-n", name, "addr", "add", f"{PUBLIC}/32", "dev", "lo"],
                       check=True)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)

        def listen() -> socket.socket:
            s = socket.socket()
            s.bind(("0.0.0.0", 8080))
            s.listen(128)
            return s

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler, False)
        srv.socket.close()
        srv.socket = netns.in_netns(fd, listen)
        # The world's server runs in a process of its own: in this one it would share the GIL
        # with warden's egress loop (and with the direct client), and each peer's figures
        # would carry the other's thread switches.
        server = os.fork()
        if server == 0:
            try:
                srv.serve_forever()
            finally:
                os._exit(0)
        srv.socket.close()
        # The server is on the world namespace's own loopback, which warden dials from: such
        # an address is opened only by a CIDR rule that names it.
        policy = warden.NetworkPolicy(allow=["api.test:8080", "127.0.0.1:8080"],
                                      resolve={"api.test": "127.0.0.1"},
                                      egress_netns=f"/run/netns/{name}")
        with warden.Sandbox(network=policy, limits=warden.Limits(wall_time_s=600)) as sb:
            sb.files.write("c.py", CLIENT)

            def inside(mode: str, runs: int) -> list[float]:
                r = sb.exec([sys.executable, "-I", "/workspace/c.py", mode, str(runs)],
                            timeout=600)
                if r.exit_code != 0:
                    raise SystemExit(f"client {mode}: {r.stderr.decode()[-2000:]}")
                return json.loads(r.stdout)

            print(f"runs: {args.runs} (bulk: {max(3, args.runs // 30)})")
            line("request, HTTP forward", inside("http", args.runs),
                 direct(fd, "http", args.runs))
            line("request, CONNECT tunnel", inside("connect", args.runs),
                 direct(fd, "http", args.runs))
            cpu0 = loop_cpu()
            setups = inside("setup", args.runs)
            cpu = (loop_cpu() - cpu0) / args.runs
            line("connection set-up (CONNECT 200)", setups, direct(fd, "setup", args.runs))
            # CPU time is steadier than wall time on a shared host: what warden's egress loop
            # thread spent per connection (set-up, relay and teardown).
            print(f"  egress loop CPU per proxied connection: {cpu * 1e6:.0f} us")
            bulk = max(3, args.runs // 30)
            line("10 MB download, HTTP forward", inside("bulk", bulk), direct(fd, "bulk", bulk))
        tpolicy = warden.NetworkPolicy(mode="transparent",
                                       allow=["api.test:8080", f"{PUBLIC}:8080"],
                                       resolve={"api.test": PUBLIC},
                                       egress_netns=f"/run/netns/{name}")
        transparent(fd, tpolicy, args.runs)
        ipolicy = warden.NetworkPolicy(allow=["api.test:8080", "127.0.0.1:8080"],
                                       resolve={"api.test": "127.0.0.1"},
                                       egress_netns=f"/run/netns/{name}",
                                       inject={"api.test": {"Authorization": "Bearer x"}})
        creations({"proxy": policy, "transparent": tpolicy, "proxy+inject": ipolicy},
                  max(10, args.runs // 10))
        os.kill(server, signal.SIGKILL)
        os.waitpid(server, 0)
        os.close(fd)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


if __name__ == "__main__":
    main()
