"""The native provider's side of NetworkPolicy: each sandbox with a policy is attached to
the process's egress service (warden.host.net.egress) through the network namespace the
sandbox runs in, which the provider keeps open for the sandbox's life. The sandbox's code sees
its proxy at 127.0.0.1:PROXY_PORT and the usual proxy variables in its environment."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence

from warden.errors import InvalidArgument, WorkerCrashed
from warden.host import state
from warden.host.environ import sandbox_env
from warden.host.net import expose as _expose
from warden.host.net import gateway as _gateway
from warden.host.net import tls
from warden.host.net.egress import egress, proxy_env
from warden.providers.base import SandboxHandle, SandboxSpec
from warden.providers.native.state import NativeState, state_of
from warden.spec.limits import Limits
from warden.spec.network import NetworkEvent, NetworkPolicy
from warden.spec.result import ExecResult

__all__ = ["NetworkMixin", "attach", "binds", "detach", "egressed", "env_for", "trust_store"]


def env_for(network: str | NetworkPolicy, env: Mapping[str, str],
            ca: tls.CertAuthority | None = None) -> dict[str, str]:
    """The sandbox's environment: a policy's proxy variables, the trust store's when the
    sandbox has its own CA, then the caller's own."""
    proxied = isinstance(network, NetworkPolicy) and network.mode == "proxy"
    base = proxy_env() if proxied else {}
    if ca is not None:
        base.update(tls.ca_env())
    return {**base, **env}


# The sandbox's name service looks at DNS (warden's) in transparent mode; otherwise it has
# its files alone, as a sandbox of network "none" or behind the proxy needs no resolver.
_NSSWITCH = os.path.join(os.path.dirname(_gateway.__file__), "nsswitch-dns.conf")


def binds(network: str | NetworkPolicy, bundle: str | None) -> list[tuple[str, str]]:
    """What the sandbox's network adds to its read-only binds (host path, path inside)."""
    out = [] if bundle is None else [(bundle, tls.BUNDLE_PATH)]
    if isinstance(network, NetworkPolicy) and network.mode == "transparent":
        out.append((_NSSWITCH, "/etc/nsswitch.conf"))
    return out


def trust_store(network: str | NetworkPolicy, undo: contextlib.ExitStack,
                ) -> tuple[tls.CertAuthority | None, str | None]:
    """For a policy that injects headers: the sandbox's own CA, and a host file of the
    host's CA certificates and the sandbox's (bound read-only at tls.BUNDLE_PATH), removed
    by ``undo`` unless the sandbox is made; (None, None) for any other network."""
    if not isinstance(network, NetworkPolicy) or not network.inject:
        return None, None
    ca = tls.CertAuthority()
    # A directory of warden's private area (host/state.py), not of the shared /tmp: no other
    # host user can swap or read it, and it goes with the sandbox (or the process's area).
    where = state.areas().make("ca-")
    undo.callback(state.areas().remove, where)
    # Its 0700 area keeps other host users out; the sandbox reads the bound file as other.
    os.chmod(where, 0o755)
    path = os.path.join(where, "ca-bundle.pem")
    with open(path, "wb") as f:
        system = tls.system_bundle()
        f.write(system + (b"" if not system or system.endswith(b"\n") else b"\n") + ca.pem)
    os.chmod(path, 0o644)
    return ca, path


def attach(st: NativeState, network: str | NetworkPolicy) -> None:
    """Start the proxy of a sandbox made with a policy (nothing for 'none')."""
    if isinstance(network, NetworkPolicy):
        st.net = egress().attach(st.netns, network, st.ca)


def detach(st: NativeState) -> None:
    """End the sandbox's proxy, connections and exposed ports, and release its namespace
    and trust store."""
    if st.net is not None:
        egress().detach(st.net)
        st.net = None
    if st.netns >= 0:
        os.close(st.netns)
        st.netns = -1
    if st.ca_bundle is not None:
        state.areas().remove(os.path.dirname(st.ca_bundle))
        st.ca_bundle = None


def _port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgument("port", port, "a TCP port from 1 to 65535")
    return port


def egressed(handle: SandboxHandle, before: tuple[int, int], result: ExecResult) -> ExecResult:
    """``result`` with the bytes relayed for its sandbox since ``before`` (the command's, and
    any background process's of the sandbox while it ran)."""
    net = state_of(handle).net
    if net is not None:
        result.egress_bytes_up = net.totals[0] - before[0]
        result.egress_bytes_down = net.totals[1] - before[1]
    return result


class NetworkMixin:
    """The network methods of NativeProvider."""

    @staticmethod
    def _env(handle: SandboxHandle) -> dict[str, str]:
        """The environment of a command run in the sandbox now."""
        env = env_for(handle.spec.network, handle.spec.env, state_of(handle).ca)
        return dict(e.split("=", 1) for e in sandbox_env(env))

    def egress_bytes(self, handle: SandboxHandle) -> tuple[int, int]:
        net = state_of(handle).net
        return (0, 0) if net is None else (net.totals[0], net.totals[1])

    def _live_state(self, handle: SandboxHandle) -> NativeState:
        st = state_of(handle)
        if st.destroyed or st.netns < 0:
            raise WorkerCrashed(f"sandbox {handle.id} is gone ({st.dead}); create a new one")
        return st

    def set_network(self, handle: SandboxHandle, network: str | NetworkPolicy) -> None:
        st = self._live_state(handle)
        self.check(SandboxSpec(network=network))  # type: ignore[attr-defined]
        policy = network if isinstance(network, NetworkPolicy) else None
        if policy is not None and policy.inject and st.ca is None:
            raise InvalidArgument(
                "network", "NetworkPolicy(inject=...)", "a sandbox made without inject has "
                "no CA of its own in its trust store: create the sandbox with a policy that "
                "injects headers (set_network may then change them)")
        with st.lock:
            if st.net is None:
                if policy is None:
                    return
                st.net = egress().attach(st.netns, policy, st.ca)
            else:
                egress().set_policy(st.net, policy)
            # Commands started from now on get the proxy variables (or lose them).
            handle.spec = _replace_network(handle.spec, network)

    def network_log(self, handle: SandboxHandle) -> list[NetworkEvent]:
        st = state_of(handle)
        net = st.net
        return [] if net is None else net.events()

    def expose(self, handle: SandboxHandle, port: int) -> str:
        port = _port(port)
        st = self._live_state(handle)
        with st.lock:
            if st.net is None:
                st.net = egress().attach(st.netns, None)
            net = st.net
        return _expose.expose(net, port)

    def unexpose(self, handle: SandboxHandle, port: int) -> None:
        port = _port(port)
        net = state_of(handle).net
        if net is not None:
            _expose.unexpose(net, port)

    def _run_with_policy(self, argv: Sequence[str], *, stdin: bytes | None, limits: Limits,
                         network: NetworkPolicy, env: Mapping[str, str] | None,
                         cwd: str | None, max_output_bytes: int | None = None) -> ExecResult:
        """warden.run with a policy: a worker sandbox, its proxy, the command, torn down."""
        spec = SandboxSpec(limits=limits, network=network, env=dict(env or {}),
                           cwd=cwd or "/workspace")
        handle = self.create(spec)  # type: ignore[attr-defined]
        t0 = time.monotonic()
        try:
            return self.exec(handle, argv, stdin=stdin,  # type: ignore[attr-defined]
                             timeout=max(0.001, limits.wall_time_s - (time.monotonic() - t0)),
                             max_output_bytes=max_output_bytes)
        finally:
            self.destroy(handle)  # type: ignore[attr-defined]


def _replace_network(spec: SandboxSpec, network: str | NetworkPolicy) -> SandboxSpec:
    import dataclasses

    return dataclasses.replace(spec, network=network)
