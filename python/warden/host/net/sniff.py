"""The name a connection claims in its first bytes, for the transparent mode: the server name
(SNI) of a TLS ClientHello (RFC 8446, 4.1.2; RFC 6066, 3) or the Host header of an HTTP/1.x
request. Pure and bounded: the bytes are the sandbox's, and nothing here trusts them; the
name found is only ever checked against the address the sandbox dialled.
"""

from __future__ import annotations

from warden.host.net.http import MAX_HEAD, BadRequest, authority
from warden.host.net.rules import address_of
from warden.spec.network import host_name

__all__ = ["MAX_SNIFF", "claimed_name"]

MAX_SNIFF = 16384 + 5  # one TLS record, or an HTTP head of the proxy's own cap
_METHOD_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def claimed_name(data: bytes) -> tuple[bool, str | None]:
    """(whether ``data`` already says all it will, the name it claims or None)."""
    if not data:
        return False, None
    if data[0] == 0x16:
        if len(data) < 5:
            return False, None
        end = 5 + int.from_bytes(data[3:5], "big")
        if len(data) < end:
            return len(data) >= MAX_SNIFF, None
        return True, _sni(data[5:end])
    space = data.find(b" ", 0, 16)
    if space > 0 and set(data[:space]) <= _METHOD_CHARS:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return len(data) >= MAX_HEAD, None
        return True, _host(data[:end])
    return True, None


def _host(head: bytes) -> str | None:
    hosts = [line[5:].strip(b" \t") for line in head.split(b"\r\n")[1:]
             if line[:5].lower() == b"host:"]
    if len(hosts) != 1:
        return None
    try:
        target = authority(hosts[0].decode("latin-1"), 80)
    except BadRequest:
        return None
    if address_of(target.host) is not None:
        return None  # an address claims no name
    return host_name(target.host)


def _sni(msg: bytes) -> str | None:
    """The host_name of a ClientHello's server_name extension, or None."""
    try:
        if msg[0] != 1:  # a ClientHello
            return None
        i = 4 + 2 + 32                                   # header, version, random
        i += 1 + msg[i]                                  # session id
        i += 2 + int.from_bytes(msg[i:i + 2], "big")     # cipher suites
        i += 1 + msg[i]                                  # compression methods
        end = i + 2 + int.from_bytes(msg[i:i + 2], "big")
        i += 2
        while i + 4 <= min(end, len(msg)):
            kind, size = int.from_bytes(msg[i:i + 2], "big"), int.from_bytes(msg[i + 2:i + 4],
                                                                                "big")
            body = msg[i + 4:i + 4 + size]
            i += 4 + size
            if kind != 0:
                continue
            # server_name_list: its length, then (name_type, length, name) entries.
            if len(body) < 5 or body[2] != 0:
                return None
            n = int.from_bytes(body[3:5], "big")
            return host_name(body[5:5 + n].decode("ascii")) if len(body) >= 5 + n else None
    except (IndexError, UnicodeDecodeError):
        return None
    return None
