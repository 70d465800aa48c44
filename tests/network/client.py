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


def https_get(url, cafile=None, auth=None):
    """GET ``url`` as the environment says (HTTPS_PROXY, SSL_CERT_FILE), or trusting
    ``cafile`` alone; ``auth`` is sent as the request's own Authorization header."""
    import ssl

    ctx = ssl.create_default_context(cafile=cafile)
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode()}
    except OSError as e:
        return {"error": str(e)}


def https_post(url, size):
    """POST ``size`` bytes to ``url`` as the environment says; the answer's body."""
    req = urllib.request.Request(url, data=b"b" * size, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return {"status": r.status, "body": r.read().decode()}


def tls_tunnel(host, port, sni, request):
    """CONNECT to ``host:port``, TLS naming ``sni`` (trusting SSL_CERT_FILE), send
    ``request`` as is; what came back, or the error."""
    import ssl

    s = socket.create_connection(PROXY, timeout=10)
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode())
    first = s.recv(64)
    if not first.startswith(b"HTTP/1.1 200"):
        return {"reply": first.decode("latin-1")}
    ctx = ssl.create_default_context()
    try:
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.sendall(request.encode())
        return {"reply": recv_all(t).decode("latin-1")}
    except (ssl.SSLError, OSError) as e:
        return {"error": type(e).__name__}


def search(first, second):
    """Look for ``first + second`` (never made whole here) in every environment and command
    line this sandbox can see, its writable places and trust store, and the memory of every
    process whose memory it can read."""
    needle, rest = first.encode(), second.encode()
    found, scanned = [], 0

    def look(where, data):
        i = data.find(needle)
        while i >= 0:
            if data[i + len(needle):i + len(needle) + len(rest)] == rest:
                found.append(where)
                return
            i = data.find(needle, i + 1)

    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        for part in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as f:
                    look(f"/proc/{pid}/{part}", f.read())
            except OSError:
                pass
        scanned += _memory(pid, look)
    for root in ("/workspace", "/tmp", "/dev/shm", "/etc"):
        for d, _, names in os.walk(root):
            for n in names:
                try:
                    with open(os.path.join(d, n), "rb") as f:
                        look(os.path.join(d, n), f.read(1 << 22))
                except OSError:
                    pass
    return {"found": found, "memory_of": scanned, "pids": len(pids)}


def _memory(pid, look):
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb")
    except OSError:
        return 0
    with mem:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if "r" not in line.split()[1] or hi - lo > 1 << 28:
                continue
            try:
                mem.seek(lo)
                look(f"/proc/{pid}/mem", mem.read(hi - lo))
            except (OSError, OverflowError, ValueError):
                pass
    return 1


def getaddr(name):
    """The addresses the sandbox's resolver finds for ``name``, or the error."""
    try:
        return {"addresses": sorted({i[4][0] for i in socket.getaddrinfo(
            name, 80, socket.AF_INET, socket.SOCK_STREAM)})}
    except socket.gaierror as e:
        return {"gaierror": e.errno}


def dns_rcode(name, server="127.0.0.1", qtype=1):
    """Ask ``server`` about ``name`` over UDP; the answer's rcode and record count."""
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    q += int(qtype).to_bytes(2, "big") + b"\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.sendto(q, (server, 53))
    a = s.recv(4096)
    return {"id": a[:2].hex(), "rcode": a[3] & 0xF, "answers": int.from_bytes(a[6:8], "big")}


def plain_get(host, port, path, host_header=None):
    """A GET over a plain socket to ``host`` (proxy variables are not looked at)."""
    try:
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host_header or host}\r\n\r\n".encode())
    except OSError as e:
        return {"error": str(e)}
    reply = recv_all(s).decode("latin-1")
    return {"reply": reply, "body": reply.partition("\r\n\r\n")[2]}


def tls_get(host, port, sni, cafile):
    """A GET over TLS on a plain socket, naming ``sni``, trusting ``cafile`` alone."""
    import ssl

    ctx = ssl.create_default_context(cafile=cafile)
    try:
        s = socket.create_connection((host, port), timeout=10)
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.sendall(f"GET /tls HTTP/1.0\r\nHost: {sni}\r\n\r\n".encode())
    except (ssl.SSLError, OSError) as e:
        return {"error": type(e).__name__}
    return {"reply": recv_all(t).decode("latin-1")}


def links():
    """The sandbox's network interfaces."""
    return {"links": sorted(line.split(":")[0].strip() for line in
                            open("/proc/net/dev").read().splitlines()[2:])}


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
