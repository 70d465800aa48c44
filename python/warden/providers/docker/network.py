"""The Docker provider's side of NetworkPolicy, in proxy mode: a container still runs with
``--network none`` (its own network namespace, loopback only), and warden's egress service
(warden.host.net.egress) makes the sandbox's proxy listener inside that namespace, at
127.0.0.1:PROXY_PORT, as it does for a native sandbox. The namespace is found through the
container's main process (/proc/PID/ns/net), which needs the engine on this machine and a
warden allowed to enter the namespace (root, with no user namespace remapping).

A container replaced after it died gets a new namespace, and with it a new listener and a
new log. Transparent mode and credential injection are the native provider's alone.
"""

from __future__ import annotations

import os
from typing import Any

from warden.errors import ProviderUnavailable
from warden.host.net.egress import egress, proxy_env
from warden.providers.base import SandboxHandle, SandboxSpec
from warden.providers.docker.state import DockerState, state_of
from warden.spec.network import NetworkEvent, NetworkPolicy

__all__ = ["NetworkMixin", "attach", "detach", "env_for"]


def env_for(spec: SandboxSpec) -> dict[str, str]:
    """The proxy variables of a policy's container (none for network 'none')."""
    return proxy_env() if isinstance(spec.network, NetworkPolicy) else {}


def _netns(api: Any, cid: str) -> int:
    pid = api.inspect_container(cid)["State"]["Pid"]
    try:
        fd = os.open(f"/proc/{int(pid)}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(
            f"a network policy on provider 'docker' (container {cid[:12]})",
            "warden could not open the container's network namespace: the engine must run on "
            "this machine and warden as root") from exc
    # The pid named the container's process when it was read: still so once the namespace
    # is open, or the descriptor may be another process's.
    if api.inspect_container(cid)["State"]["Pid"] != pid:
        os.close(fd)
        raise ProviderUnavailable(f"a network policy on provider 'docker' (container "
                                  f"{cid[:12]})", "the container ended while it was started")
    return fd


def attach(api: Any, st: DockerState, spec: SandboxSpec, cid: str) -> None:
    """Start the proxy of the container ``cid`` of a sandbox made with a policy."""
    detach(st)
    if not isinstance(spec.network, NetworkPolicy):
        return
    fd = _netns(api, cid)
    try:
        st.net = egress().attach(fd, spec.network)
    finally:
        os.close(fd)


def detach(st: DockerState) -> None:
    """End the proxy, connections and log of the sandbox's current container."""
    if st.net is not None:
        egress().detach(st.net)
        st.net = None


class NetworkMixin:
    """The network methods of DockerProvider."""

    def network_log(self, handle: SandboxHandle) -> list[NetworkEvent]:
        net = state_of(handle).net
        return [] if net is None else net.events()

    def egress_bytes(self, handle: SandboxHandle) -> tuple[int, int]:
        net = state_of(handle).net
        return (0, 0) if net is None else (net.totals[0], net.totals[1])
