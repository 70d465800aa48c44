"""The provider protocol: what every execution backend (native, docker, third-party) offers.

A provider makes sandboxes for a :class:`SandboxSpec`, runs commands and worker calls in them,
moves files in and out, and cleans up. The orchestration layer (warden.Sandbox, warden.Engine)
talks to providers only through this class, so a backend is added without touching it.

Providers refuse a spec they cannot honour (:meth:`Provider.check`) instead of silently
weakening it: a limit the backend cannot enforce raises ProviderUnavailable naming it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from warden.errors import ProviderUnavailable
from warden.limits import ExecResult, Limits

__all__ = ["Capabilities", "SandboxSpec", "SandboxHandle", "ReconcileReport", "Provider",
           "LABEL_KEYS"]

# The labels every sandbox may carry; reuse and listing go by them.
LABEL_KEYS = ("tenant", "project", "environment", "purpose")


@dataclass(frozen=True)
class Capabilities:
    isolation: str                       # "namespaces+seccomp+cgroups", "container", ...
    limits: frozenset[str]               # Limits fields the provider enforces
    network_policies: frozenset[str]     # e.g. {"none"}
    readonly_root: bool
    worker_protocol: bool = True         # can run warden's worker (call, run_python)
    images: bool = False                 # runs a spec's container image (SandboxSpec.image)


@dataclass(frozen=True)
class SandboxSpec:
    """What a sandbox must be. Plain data; providers map it onto their mechanisms."""

    limits: Limits = field(default_factory=Limits)
    network: str = "none"
    readonly: bool = False               # the workspace is read-only to the code inside
    labels: Mapping[str, str] = field(default_factory=dict)
    # Host directory bound read-only inside, at `mount_at` (a plugin's root); "" for none.
    code_dir: str = ""
    mount_at: str = "/plugin"
    # Writable directories inside (each counted against limits.disk_mb); empty: /workspace.
    writable: tuple[str, ...] = ()
    cwd: str = "/workspace"
    env: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None             # container providers only
    # Worker: the plugin's entry file inside the sandbox (e.g. /plugin/src/main.py), loaded by
    # the worker at start; "" for a sandbox without a plugin. `data_dir` (inside) enables
    # {"$file": relpath} payloads.
    entry_point: str = ""
    data_dir: str = ""

    def __post_init__(self) -> None:
        for key, value in self.labels.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"labels must map str to str, got {key!r}: {value!r}")


@dataclass
class SandboxHandle:
    """A live sandbox as its provider knows it."""

    id: str
    provider: str
    spec: SandboxSpec
    labels: dict[str, str]
    reuse_key: str | None = None
    state: dict = field(default_factory=dict)   # provider-private


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
        if spec.network not in caps.network_policies:
            raise ProviderUnavailable(
                f"network policy {spec.network!r} on provider {self.name!r}",
                f"it offers {sorted(caps.network_policies)}")
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

    @abc.abstractmethod
    def exec(self, handle: SandboxHandle, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run a command inside the sandbox and wait for it."""

    @abc.abstractmethod
    def call(self, handle: SandboxHandle, op: str, args: dict, *,
             timeout: float | None = None) -> object:
        """One request of the worker protocol (warden.worker): returns the result or raises the
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

    @abc.abstractmethod
    def list(self, labels: Mapping[str, str] | None = None) -> list[SandboxHandle]:
        """Live sandboxes of this provider whose labels include ``labels``."""

    @abc.abstractmethod
    def reconcile(self) -> ReconcileReport:
        """Remove orphans, re-adopt survivors, classify exits."""

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            limits: Limits | None = None, network: str = "none",
            env: Mapping[str, str] | None = None, cwd: str | None = None) -> ExecResult:
        """One command in a fresh sandbox, torn down after."""
        spec = SandboxSpec(limits=limits or Limits(), network=network, env=dict(env or {}),
                           cwd=cwd or "/workspace")
        self.check(spec)
        handle = self.create(spec)
        try:
            return self.exec(handle, argv, stdin=stdin, timeout=spec.limits.wall_time_s)
        finally:
            self.destroy(handle)

    def close(self) -> None:
        """Release the provider's own resources (not the sandboxes of other processes)."""
