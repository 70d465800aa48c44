"""The transparent mode's plumbing: per sandbox, a network namespace of warden's own (the
gateway), a veth pair made with pyroute2 between it and the sandbox's namespace, the
sandbox's default route through it, and, in the gateway, netfilter rules that hand every TCP
connection and every DNS query arriving from the sandbox to warden's sockets there.

The gateway has two interfaces, lo and its end of the veth: no bridge, no route, no link to
the host's networks, and forwarding off (a new namespace's default), so a packet that
warden's sockets do not take goes nowhere. Nothing is made in the host's namespace. The
gateway is anonymous (no /run/netns name): it is gone, and the veth pair with it
(veth(4): deleting one end deletes the pair), once warden has closed its descriptor and its
sockets there. One gateway per sandbox, so no sandbox can reach another's.

pyroute2 is imported here alone, lazily, with an install hint.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from warden.errors import ProviderUnavailable, SandboxSetupError
from warden.host.net import netns

__all__ = ["DNS_PORT", "GATEWAY_ADDR", "SANDBOX_ADDR", "TCP_PORT", "build", "dns_socket",
           "tcp_listener"]

GATEWAY_ADDR, SANDBOX_ADDR, PREFIX = "10.255.255.1", "10.255.255.2", 30
GATEWAY_IF, SANDBOX_IF = "wd0", "eth0"
TCP_PORT, DNS_PORT = 15001, 15053
BACKLOG = 64
T = TypeVar("T")

# Every TCP connection and every DNS query from the sandbox goes to warden's sockets; the
# rest of what arrives on the veth is for no one here and is dropped.
_RULES = f"""*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -i {GATEWAY_IF} -p tcp -j REDIRECT --to-ports {TCP_PORT}
-A PREROUTING -i {GATEWAY_IF} -p udp --dport 53 -j REDIRECT --to-ports {DNS_PORT}
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -i {GATEWAY_IF} -p tcp --dport {TCP_PORT} -j ACCEPT
-A INPUT -i {GATEWAY_IF} -p udp --dport {DNS_PORT} -j ACCEPT
-A INPUT -i {GATEWAY_IF} -j DROP
COMMIT
"""


def _iproute() -> Any:
    try:
        from pyroute2 import IPRoute
    except ImportError as exc:
        raise ProviderUnavailable(
            "NetworkPolicy(mode='transparent')",
            "the veth pair is made with pyroute2: pip install 'warden[transparent]'") from exc
    return IPRoute


def _step(step: str, fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except OSError as exc:  # pyroute2's NetlinkError is an OSError carrying the errno
        code = exc.errno or getattr(exc, "code", None) or errno.EIO
        raise SandboxSetupError(step, code, "setting up NetworkPolicy(mode='transparent')") \
            from exc


def build(sandbox_netns: int) -> int:
    """The gateway of the sandbox whose network namespace is ``sandbox_netns``, set up: its
    descriptor (close it, and the sockets made in it, to remove it all)."""
    iproute = _iproute()
    tools = [shutil.which(t) for t in ("nsenter", "iptables-restore")]
    if None in tools:
        raise SandboxSetupError("gateway rules", errno.ENOENT, "the transparent mode needs "
                                "nsenter(1) and iptables-restore(8) in PATH")
    gw = _step("gateway namespace", netns.new_netns)
    try:
        _step("veth pair", netns.in_netns, gw, partial(_gateway_side, iproute, sandbox_netns))
        _step("sandbox route", netns.in_netns, sandbox_netns, partial(_sandbox_side, iproute))
        _rules(gw, tools)
    except BaseException:
        os.close(gw)
        raise
    return gw


def _gateway_side(iproute: Any, sandbox_netns: int) -> None:
    with iproute() as ipr:
        ipr.link("add", ifname=GATEWAY_IF, kind="veth",
                 peer={"ifname": SANDBOX_IF, "net_ns_fd": sandbox_netns})
        for name in ("lo", GATEWAY_IF):
            index = ipr.link_lookup(ifname=name)[0]
            if name != "lo":
                ipr.addr("add", index=index, address=GATEWAY_ADDR, prefixlen=PREFIX)
            ipr.link("set", index=index, state="up")


def _sandbox_side(iproute: Any) -> None:
    with iproute() as ipr:
        index = ipr.link_lookup(ifname=SANDBOX_IF)[0]
        ipr.addr("add", index=index, address=SANDBOX_ADDR, prefixlen=PREFIX)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=GATEWAY_ADDR)


def _rules(gw: int, tools: list[str | None]) -> None:
    nsenter, restore = tools
    try:
        done = subprocess.run(
            [str(nsenter), f"--net=/proc/self/fd/{gw}", str(restore), "-w"],
            input=_RULES.encode(), pass_fds=[gw], capture_output=True, timeout=30,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxSetupError("gateway rules", getattr(exc, "errno", None) or errno.EIO,
                                "running iptables-restore in the gateway") from exc
    if done.returncode != 0:
        raise SandboxSetupError("gateway rules", errno.EIO, "iptables-restore in the gateway "
                                f"exited with {done.returncode}")


def tcp_listener() -> socket.socket:
    """The socket the gateway's redirected TCP arrives at (made on a thread inside it)."""
    return netns.listener(GATEWAY_ADDR, TCP_PORT, BACKLOG)


def dns_socket(addr: str, port: int) -> socket.socket:
    """A UDP socket for warden's DNS server, bound in the namespace of the calling thread."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        s.bind((addr, port))
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s
