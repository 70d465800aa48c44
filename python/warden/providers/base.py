"""The provider protocol: what every execution backend (native, docker, third-party) offers.

A provider makes sandboxes for a :class:`SandboxSpec`, runs commands and worker calls in them,
moves files in and out, and cleans up. The orchestration layer (warden.Sandbox, warden.Engine)
talks to providers only through this class, so a backend is added without touching it.

Providers refuse a spec they cannot honour (:meth:`Provider.check`) instead of silently
weakening it: a limit the backend cannot enforce raises ProviderUnavailable naming it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from warden.errors import ProviderUnavailable
from warden.spec.limits import Limits
from warden.spec.network import NetworkEvent, NetworkPolicy
from warden.spec.result import ExecResult
from warden.spec.sandbox import LABEL_KEYS, SandboxSpec, network_kind

# SandboxSpec and LABEL_KEYS live in warden.spec; they are named here too because every
# provider, third-party ones included, speaks of them.
__all__ = ["LABEL_KEYS", "Capabilities", "OutputCallbacks", "Provider", "ReconcileReport",
           "SandboxHandle", "SandboxSpec"]

_T = TypeVar("_T")
# "stdout"/"stderr" -> what gets each chunk of that stream as it is printed.
OutputCallbacks = Mapping[str, Callable[[bytes], object]]


@dataclass(frozen=True)
class Capabilities:
    isolation: str                       # "namespaces+seccomp+cgroups", "container", ...
    limits: frozenset[str]               # Limits fields the provider enforces
    network_policies: frozenset[str]     # "none" and the NetworkPolicy modes, e.g. "proxy"
    readonly_root: bool
    worker_protocol: bool = True         # can run warden's worker (call, run_python)
    images: bool = False                 # runs a spec's container image (SandboxSpec.image)
    network_inject: bool = False         # sets NetworkPolicy.inject headers at its egress


@dataclass
class SandboxHandle:
    """A live sandbox as its provider knows it.

    ``_state`` is the provider's own record of the sandbox (the native provider's
    ``NativeState``, the Docker provider's ``DockerState``, a third party's own type). Only the
    provider that made the handle reads or writes it, and no module outside warden.providers
    names it; what others need to know they ask the provider (:meth:`Provider.usable`).
    """

    id: str
    provider: str
    spec: SandboxSpec
    labels: dict[str, str]
    reuse_key: str | None = None
    _state: Any = field(default=None, repr=False, compare=False)


@dataclass
class ReconcileReport:
    removed: list[str] = field(default_factory=list)      # orphans cleaned up
    recovered: list[str] = field(default_factory=list)    # sandboxes found alive and re-adopted
    exits: dict[str, str] = field(default_factory=dict)   # id -> "oom"|"deadline"|"crashed"|"missing"|"exited"


class Provider(abc.ABC):
    """Base class of every provider. Subclasses implement the abstract methods."""

    name: str = "abstract"

    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    def check(self, spec: SandboxSpec) -> None:
        """Raise ProviderUnavailable if this provider cannot honour every part of ``spec``."""
        caps = self.capabilities()
        kind = network_kind(spec.network)
        if kind not in caps.network_policies:
            what = (f"NetworkPolicy(mode={kind!r})" if isinstance(spec.network, NetworkPolicy)
                    else f"network policy {kind!r}")
            raise ProviderUnavailable(
                f"{what} on provider {self.name!r}",
                f"it offers {sorted(caps.network_policies)}")
        if isinstance(spec.network, NetworkPolicy) and spec.network.inject \
                and not caps.network_inject:
            raise ProviderUnavailable(
                f"credential injection (NetworkPolicy.inject) on provider {self.name!r}",
                "pass the credential to the code inside, leave inject unset, or use "
                "provider='native'")
        if spec.readonly and not caps.readonly_root:
            raise ProviderUnavailable(f"a read-only workspace on provider {self.name!r}")
        if spec.image and not caps.images:
            raise ProviderUnavailable(
                f"container image {spec.image!r} on provider {self.name!r}",
                "it runs this host's own programs and Python; use provider='docker' or drop "
                "the image")

    @abc.abstractmethod
    def create(self, spec: SandboxSpec, *, reuse_key: str | None = None) -> SandboxHandle:
        """A sandbox for ``spec``: a live one with the same reuse key and spec, else a new one."""

    def usable(self, handle: SandboxHandle) -> bool:
        """False once ``handle`` can serve no more requests as it is (its worker died or was
        killed, or it was destroyed), so that a pool retires it instead of handing it out.
        A provider that cannot tell says True, and the sandbox's next call reports the death."""
        return True

    @abc.abstractmethod
    def exec(self, handle: SandboxHandle, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float | None = None, max_output_bytes: int | None = None,
             env: Mapping[str, str] | None = None, cwd: str | None = None,
             on_output: OutputCallbacks | None = None) -> ExecResult:
        """Run a command inside the sandbox and wait for its process to exit (not for
        background processes it started, which live on). Each of stdout and stderr keeps at
        most ``max_output_bytes`` (None: all that fits one reply; see providers.execs), the
        rest counted as dropped. The result describes this command alone. ``env`` adds to
        the sandbox's environment, ``cwd`` is a directory inside it (the workspace when
        None); ``on_output`` maps "stdout"/"stderr" to a callback that gets each chunk as the
        command prints it (warden.wire.streams), at most ``max_output_bytes`` of each
        (DEFAULT_STREAM_CAP when None). A provider that cannot stream raises
        ProviderUnavailable for ``on_output``."""

    def tool_call(self, handle: SandboxHandle, op: str, args: dict,
                  parse: Callable[[object], _T], *, timeout: float | None = None) -> _T:
        """A tool op (warden.wire.ops PROC_*) whose result ``parse`` checks; a provider whose
        sandboxes run warden's worker kills a sandbox whose result ``parse`` refuses."""
        if not self.capabilities().worker_protocol:
            raise ProviderUnavailable(f"operation {op!r} on provider {self.name!r}",
                                      "it runs no warden worker in its sandboxes")
        return parse(self.call(handle, op, args, timeout=timeout))

    @abc.abstractmethod
    def call(self, handle: SandboxHandle, op: str, args: dict, *,
             timeout: float | None = None) -> object:
        """One request of the worker protocol (warden.guest.worker): returns the result or raises the
        mapped warden error (PluginError, TimeoutExceeded, MemoryLimitExceeded, ...)."""

    @abc.abstractmethod
    def write_file(self, handle: SandboxHandle, path: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def read_file(self, handle: SandboxHandle, path: str) -> bytes: ...

    @abc.abstractmethod
    def list_files(self, handle: SandboxHandle, path: str = ".") -> list[str]: ...

    @abc.abstractmethod
    def remove_file(self, handle: SandboxHandle, path: str) -> None: ...

    @abc.abstractmethod
    def destroy(self, handle: SandboxHandle) -> None:
        """Kill everything in the sandbox and free it. Idempotent."""

    def pause(self, handle: SandboxHandle, *, reclaim: bool = False) -> int:
        """Freeze every process of the sandbox until :meth:`resume`; nothing when it is
        paused already. While paused, a request that needs the code inside raises
        SandboxPaused at once. ``reclaim`` also asks the kernel to take back what it can of
        the sandbox's memory with its processes alive; returns the bytes given back (0
        without ``reclaim``, or where the provider cannot tell)."""
        raise ProviderUnavailable(f"pause() on provider {self.name!r}")

    def resume(self, handle: SandboxHandle) -> None:
        """Thaw a paused sandbox; nothing when it is not paused."""
        raise ProviderUnavailable(f"resume() on provider {self.name!r}")

    def paused(self, handle: SandboxHandle) -> bool:
        """Whether the sandbox is paused (by any handle of it in this process)."""
        return False

    def set_network(self, handle: SandboxHandle, network: str | NetworkPolicy) -> None:
        """New connections of the sandbox go by ``network`` (checked by the caller)."""
        raise ProviderUnavailable(f"changing a running sandbox's network on provider "
                                  f"{self.name!r}")

    def network_log(self, handle: SandboxHandle) -> list[NetworkEvent]:
        """The sandbox's connection attempts, oldest first ([] for network 'none')."""
        return []

    def egress_bytes(self, handle: SandboxHandle) -> tuple[int, int]:
        """Bytes relayed to and from the world for the sandbox over its life: (up, down)."""
        return (0, 0)

    def expose(self, handle: SandboxHandle, port: int) -> str:
        """"127.0.0.1:NNNNN" on the host, forwarding to TCP ``port`` inside the sandbox."""
        raise ProviderUnavailable(f"exposing a sandbox's port on provider {self.name!r}")

    def unexpose(self, handle: SandboxHandle, port: int) -> None:  # noqa: B027 -- a no-op
        """Stop forwarding ``port``; nothing when it was not exposed."""

    @abc.abstractmethod
    def list(self, labels: Mapping[str, str] | None = None) -> list[SandboxHandle]:
        """Live sandboxes of this provider whose labels include ``labels``."""

    @abc.abstractmethod
    def reconcile(self) -> ReconcileReport:
        """Remove orphans, re-adopt survivors, classify exits."""

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            limits: Limits | None = None, network: str | NetworkPolicy = "none",
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            max_output_bytes: int | None = None) -> ExecResult:
        """One command in a fresh sandbox, torn down after. The arguments are checked by the
        caller (warden.run)."""
        spec = SandboxSpec(limits=limits or Limits(), network=network, env=dict(env or {}),
                           cwd=cwd or "/workspace")
        self.check(spec)
        handle = self.create(spec)
        try:
            return self.exec(handle, argv, stdin=stdin, timeout=spec.limits.wall_time_s,
                             max_output_bytes=max_output_bytes)
        finally:
            self.destroy(handle)

    def area_dir(self) -> str:
        """A private host directory (mode 0700, warden's user alone) for what this process
        keeps on the host for its sandboxes, such as plugin snapshots: a ``code_dir`` inside it
        reaches the sandbox by the provider's own means, never through a host path the
        sandbox's user could traverse."""
        from warden.host import state

        return state.areas().path

    def close(self) -> None:  # noqa: B027 -- a hook: most providers hold nothing to release
        """Release the provider's own resources (not the sandboxes of other processes)."""
