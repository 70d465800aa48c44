"""Name resolution for the egress proxy, done on the host side inside the egress namespace.

``lookup`` is the one place a name becomes addresses; the proxy checks each address it
returns and dials the very address it checked, so an answer that changes between the check
and the dial (DNS rebinding) cannot slip through. Tests replace ``lookup`` to play a DNS
server whose answers change.
"""

from __future__ import annotations

import socket

__all__ = ["MAX_ADDRESSES", "lookup", "system_lookup"]

MAX_ADDRESSES = 16


def system_lookup(name: str) -> list[str]:
    """The addresses of ``name`` by the host's resolver (getaddrinfo(3)), in its order,
    without duplicates; [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in out:
            out.append(addr)
    return out[:MAX_ADDRESSES]


# Called on a thread inside the egress namespace (netns.Dialer).
lookup = system_lookup
