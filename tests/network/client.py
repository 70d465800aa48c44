"""Runs inside a sandbox: one request through the proxy, the outcome as one JSON line."""

import json
import os
import socket
import sys
import urllib.request

PROXY = ("127.0.0.1", 3128)


def recv_all(s):
    out = b""
    while True:
        try:
            data = s.recv(65536)
        except OSError:
            break
        if not data:
            break
        out += data
    return out


def http_get(url, how="explicit"):
    """GET ``url`` through the proxy: named explicitly (NO_PROXY does not apply), or as the
    environment says ("env")."""
    proxies = None
    if how == "explicit":
        proxies = {"http": "http://127.0.0.1:3128"}
        os.environ.pop("NO_PROXY", None)
        os.environ.pop("no_proxy", None)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    try:
        with opener.open(url, timeout=10) as r:
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode()}
    except OSError as e:
        return {"error": str(e)}


def raw(request):
    """Send ``request`` as is to the proxy; what came back."""
    s = socket.create_connection(PROXY, timeout=10)
    s.sendall(request.encode())
    return {"reply": recv_all(s).decode("latin-1")}


def connect(host, port, host_header=None):
    s = socket.create_connection(PROXY, timeout=10)
    head = f"CONNECT {host}:{port} HTTP/1.1\r\n"
    if host_header:
        head += f"Host: {host_header}\r\n"
    s.sendall((head + "\r\n").encode())
    first = b""
    while b"\r\n\r\n" not in first:
        data = s.recv(1)
        if not data:
            return {"reply": first.decode("latin-1")}
        first += data
    if b" 200 " not in first.split(b"\r\n")[0]:
        return {"reply": first.decode("latin-1") + recv_all(s).decode("latin-1")}
    s.sendall(f"GET /via-connect HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    return {"status": 200, "body": recv_all(s).decode("latin-1")}


def socks(host, port):
    s = socket.create_connection(PROXY, timeout=10)
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        return {"error": "greeting refused"}
    name = host.encode()
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + int(port).to_bytes(2, "big"))
    reply = s.recv(10)
    if len(reply) < 2 or reply[1] != 0:
        return {"socks_reply": reply[1] if len(reply) > 1 else None}
    s.sendall(f"GET /via-socks HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    return {"status": 200, "body": recv_all(s).decode("latin-1")}


def hold(n, host, port):
    """Open ``n`` CONNECT tunnels at once; how many the proxy accepted."""
    accepted, socks_ = 0, []
    for _ in range(n):
        s = socket.create_connection(PROXY, timeout=10)
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode())
        try:
            reply = s.recv(64)
        except ConnectionResetError:
            reply = b""
        accepted += reply.startswith(b"HTTP/1.1 200")
        socks_.append(s)
    return {"accepted": accepted}


def env():
    return {k: v for k, v in os.environ.items() if "proxy" in k.lower()}


if __name__ == "__main__":
    fn = globals()[sys.argv[1]]
    args = [int(a) if a.isdigit() else a for a in sys.argv[2:]]
    try:
        out = fn(*args)
    except OSError as e:
        out = {"error": str(e)}
    print(json.dumps(out))
