"""Whether an address is one of a network namespace's own: the kernel's answer, asked over
rtnetlink at the time of each dial.

The egress proxy dials from its egress namespace, so an address that namespace holds (the
host's eth0 address when it is warden's own namespace, any address on one of its interfaces,
all of loopback) is the namespace itself, not the world. The kernel routes such an address
through its local table as RTN_LOCAL (rtnetlink(7), RTM_GETROUTE); asking for the one address
about to be dialled is exact, costs one netlink round trip, and stays right when addresses
come and go, with no list to keep fresh. The netlink socket belongs to the namespace it was
made in, like any socket, so it answers for that namespace from any thread.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading

__all__ = ["LocalRoutes"]

NETLINK_ROUTE = 0
RTM_GETROUTE = 26
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
RTA_DST = 1
RTN_LOCAL = 2
_HDR = struct.Struct("=IHHII")      # nlmsghdr: len, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
#                                       type, flags
_RTA = struct.Struct("=HH")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class LocalRoutes:
    """Asks one namespace's routing whether an address is its own. Make it on a thread that is
    in that namespace; use it from any thread."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        self._sock.bind((0, 0))
        # The kernel answers RTM_GETROUTE within sendmsg: the reply is waiting at once.
        self._sock.settimeout(1.0)
        self._lock = threading.Lock()
        self._seq = 0

    def is_local(self, addr: IPAddress) -> bool:
        """True when dialling ``addr`` from the namespace would reach the namespace itself
        (RTN_LOCAL; the unspecified address, which connect(2) takes for a local one, too).
        An address with no route at all is not local (the dial fails). Raises OSError when
        the kernel cannot be asked: callers refuse the address then."""
        if addr.is_unspecified:
            return True
        family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        packed = addr.packed
        rta = _RTA.pack(_RTA.size + len(packed), RTA_DST) + packed
        body = _RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, 0) + rta
        with self._lock:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            seq = self._seq
            self._sock.send(_HDR.pack(_HDR.size + len(body), RTM_GETROUTE, NLM_F_REQUEST,
                                      seq, 0) + body)
            while True:
                reply = self._sock.recv(65536)
                if len(reply) < _HDR.size:
                    raise OSError(0, "a short rtnetlink reply")
                _len, kind, _flags, got, _pid = _HDR.unpack_from(reply)
                if got == seq:
                    break  # an older query's late answer is skipped
        if kind == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", reply, _HDR.size)
            if err == 0:
                raise OSError(0, "an empty rtnetlink reply")
            return False  # no route (ENETUNREACH and the like): nothing local is reached
        if len(reply) < _HDR.size + _RTMSG.size:
            raise OSError(0, "a short rtnetlink reply")
        return _RTMSG.unpack_from(reply, _HDR.size)[7] == RTN_LOCAL

    def close(self) -> None:
        self._sock.close()

