"""The proxy's reading of what a sandbox sends: an HTTP/1.x request head (a CONNECT or an
absolute-form request) and a SOCKS5 greeting and request. Pure and bounded: everything here
is hostile input, refused with a reason that quotes none of it.

The checks that stop request smuggling through the proxy live here: a request must name its
target exactly once, the Host header must agree with it, one request's body length must be
unambiguous (no Content-Length with Transfer-Encoding, no two Content-Lengths), and nothing
but ``http://`` is forwarded (HTTPS goes through CONNECT, where the proxy sees no header).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from warden.spec.network import host_name

__all__ = ["MAX_HEAD", "BadRequest", "Head", "Target", "authority", "error_reply",
           "forward_head", "parse_head", "parse_origin", "socks_request"]

MAX_HEAD = 16384
MAX_HEADERS = 100
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Dropped from a forwarded request: hop-by-hop headers (RFC 9110, 7.6.1) and the proxy's own.
_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                  "proxy-authenticate", "te", "trailer", "upgrade"})


@dataclass(frozen=True)
class Target:
    host: str          # a normalised name or a literal address (no brackets)
    port: int


class BadRequest(Exception):
    """Not a request the proxy forwards; ``reason`` is warden's own words."""

    def __init__(self, reason: str, status: int = 400, target: Target | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.target = target  # what the request asked for, when that much was readable


@dataclass(frozen=True)
class Head:
    method: str
    target: Target
    path: str                           # origin-form for forwarding; "" for CONNECT
    headers: tuple[tuple[str, str], ...]
    body: str                           # "none", "length" or "chunked"
    length: int


def authority(text: str, default_port: int | None) -> Target:
    """``host[:port]`` or ``[v6][:port]`` -> Target; BadRequest when it is anything else."""
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise BadRequest("malformed bracketed address")
        host, port_text = inner, rest[1:] if rest else None
        if not _is_ip(host):
            raise BadRequest("malformed bracketed address")
    else:
        host, sep, port_s = text.partition(":")
        port_text = port_s if sep else None
    if port_text is None:
        if default_port is None:
            raise BadRequest("the target names no port")
        port = default_port
    elif port_text.isascii() and port_text.isdigit() and len(port_text) <= 5:
        port = int(port_text)
    else:
        raise BadRequest("the target's port is not a number")
    if not 1 <= port <= 65535:
        raise BadRequest("the target's port is out of range")
    if _is_ip(host):
        return Target(str(ipaddress.ip_address(host)), port)
    name = host_name(host)
    if name is None:
        raise BadRequest("the target is not a host name or address")
    return Target(name, port)


def _is_ip(text: str) -> bool:
    if not _maybe_ip(text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _maybe_ip(text: str) -> bool:
    """False for text that no address literal looks like (IPv4 begins with a digit, IPv6 has a
    colon): a name then costs no failed parse, which raises twice inside ipaddress."""
    return ":" in text or text[:1].isdigit()


def _lines(raw: bytes) -> list[bytes]:
    if len(raw) > MAX_HEAD:
        raise BadRequest("request head too large", 431)
    lines = raw.split(b"\r\n")
    if len(lines) > MAX_HEADERS + 1:
        raise BadRequest("too many header lines", 431)
    return lines


def _header(line: bytes) -> tuple[str, str]:
    name, sep, value = line.partition(b":")
    if not sep or not name or not set(name) <= _TOKEN:
        # Also refuses obsolete line folding (a line starting with blank space).
        raise BadRequest("malformed header line")
    if any(c < 0x20 and c != 0x09 or c == 0x7F for c in value):
        raise BadRequest("control character in a header value")
    return name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")


def _request_line(line: bytes) -> tuple[str, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest("not an HTTP/1.x request line")
    if not parts[0] or not set(parts[0]) <= _TOKEN:
        raise BadRequest("malformed method")
    return parts[0].decode("ascii"), parts[1].decode("latin-1")


def _one_host(headers: tuple[tuple[str, str], ...]) -> str | None:
    hosts = [v for k, v in headers if k == "host"]
    if len(hosts) > 1:
        raise BadRequest("more than one Host header")
    return hosts[0] if hosts else None


def parse_head(raw: bytes) -> Head:
    """The head of one request (``raw`` without the final blank line)."""
    lines = _lines(raw)
    method, target_text = _request_line(lines[0])
    headers = tuple(_header(line) for line in lines[1:])
    host = _one_host(headers)
    if method == "CONNECT":
        target, path = authority(target_text, None), ""
    else:
        target, path = _absolute(target_text)
    if host is not None and authority(host, target.port if method == "CONNECT" else 80) != target:
        raise BadRequest("the Host header disagrees with the request's target", 403, target)
    body, length = _body(headers) if method != "CONNECT" else ("none", 0)
    return Head(method, target, path, headers, body, length)


def parse_origin(raw: bytes, target: Target) -> Head:
    """The head of a request sent inside a tunnel to ``target`` (origin form, as a client
    sends it to the host itself); its Host header, if any, must name ``target``."""
    lines = _lines(raw)
    method, path = _request_line(lines[0])
    if method == "CONNECT" or not path.startswith("/"):
        raise BadRequest("a request inside a tunnel names an origin-form path")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in path):
        raise BadRequest("control or non-ASCII character in the URL")
    headers = tuple(_header(line) for line in lines[1:])
    host = _one_host(headers)
    if host is not None and authority(host, target.port) != target:
        raise BadRequest("the Host header disagrees with the tunnel's target", 403, target)
    body, length = _body(headers)
    return Head(method, target, path, headers, body, length)


def _absolute(text: str) -> tuple[Target, str]:
    if not text.lower().startswith("http://"):
        raise BadRequest("a proxy request names an absolute http:// URL (use CONNECT for "
                         "anything else)")
    rest = text[7:]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    auth, path = rest[:cut], rest[cut:] or "/"
    if "@" in auth or "#" in text:
        raise BadRequest("user information or a fragment in the URL")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in path):
        raise BadRequest("control or non-ASCII character in the URL")
    return authority(auth, 80), path if path.startswith("/") else "/" + path


def _body(headers: tuple[tuple[str, str], ...]) -> tuple[str, int]:
    lengths = [v for k, v in headers if k == "content-length"]
    codings = [v for k, v in headers if k == "transfer-encoding"]
    if lengths and codings:
        raise BadRequest("both Content-Length and Transfer-Encoding")
    if codings:
        if len(codings) != 1 or codings[0].lower() != "chunked":
            raise BadRequest("a Transfer-Encoding other than chunked")
        return "chunked", 0
    if not lengths:
        return "none", 0
    if len(lengths) != 1 or not lengths[0].isascii() or not lengths[0].isdigit() \
            or len(lengths[0]) > 15:
        raise BadRequest("a malformed or repeated Content-Length")
    return "length", int(lengths[0])


def forward_head(head: Head, extra: Mapping[str, str] | None = None, *,
                 default_port: int = 80) -> bytes:
    """The request as the origin server gets it: origin-form, Host set, one request per
    connection (``Connection: close``), the proxy's and hop-by-hop headers dropped, and
    ``extra`` headers set (in place of any of the same name the request had)."""
    extra = extra or {}
    named = {v.strip().lower() for k, v in head.headers if k == "connection"
             for v in v.split(",")}
    named |= {k.lower() for k in extra}
    keep = [(k, v) for k, v in head.headers if k not in _HOP and k not in named and k != "host"]
    t = head.target
    host = f"[{t.host}]" if ":" in t.host else t.host
    host = host if t.port == default_port else f"{host}:{t.port}"
    out = [f"{head.method} {head.path} HTTP/1.1", f"Host: {host}"]
    out += [f"{k}: {v}" for k, v in keep]
    out += [f"{k}: {v}" for k, v in extra.items()]
    out.append("Connection: close")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


_PHRASES = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large",
            502: "Bad Gateway", 429: "Too Many Requests"}


def error_reply(status: int, reason: str) -> bytes:
    """The proxy's own answer refusing a request; ``reason`` is warden's words."""
    body = f"warden egress proxy: {reason}\n".encode()
    return (f"HTTP/1.1 {status} {_PHRASES.get(status, 'Refused')}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def socks_request(data: bytes) -> tuple[Target | None, int]:
    """A SOCKS5 request (RFC 1928, 4) after VER: (target, 0) or (None, reply code). Needs
    the whole request; ``data`` is CMD RSV ATYP DST.ADDR DST.PORT."""
    if len(data) < 4 or data[1] != 0:
        return None, 1
    if data[0] != 1:
        return None, 7  # only CONNECT: no BIND, no UDP ASSOCIATE
    atyp, rest = data[2], data[3:]
    if atyp == 1 and len(rest) == 6:
        host = str(ipaddress.IPv4Address(rest[:4]))
    elif atyp == 4 and len(rest) == 18:
        host = str(ipaddress.IPv6Address(rest[:16]))
    elif atyp == 3 and rest and len(rest) == rest[0] + 3:
        name = host_name(rest[1:1 + rest[0]].decode("latin-1"))
        if name is None:
            return None, 2
        host = name
    else:
        return None, 8
    port = int.from_bytes(rest[-2:], "big")
    if port == 0:
        return None, 2
    return Target(host, port), 0
