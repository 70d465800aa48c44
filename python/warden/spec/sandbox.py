"""What a sandbox must be: SandboxSpec, plain frozen data that every provider maps onto its
own mechanisms, and the label keys that listing and reuse go by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from warden.errors import InvalidArgument
from warden.spec.limits import NETWORK_POLICIES, Limits
from warden.spec.network import NetworkPolicy

__all__ = ["LABEL_KEYS", "SandboxSpec", "known_network", "network_kind"]

# The labels every sandbox may carry; reuse and listing go by them.
LABEL_KEYS = ("tenant", "project", "environment", "purpose")


def known_network(network: object) -> str | NetworkPolicy:
    """``network`` if warden knows that policy: "none" or a NetworkPolicy. One it knows but a
    provider cannot give is that provider's ProviderUnavailable, raised when the sandbox is
    made."""
    if isinstance(network, NetworkPolicy):
        return network
    if not isinstance(network, str) or network not in NETWORK_POLICIES:
        raise InvalidArgument("network", network, "it is not a network policy warden knows; "
                              "use " + " or ".join(repr(p) for p in NETWORK_POLICIES)
                              + " or a warden.NetworkPolicy")
    return network


def network_kind(network: str | NetworkPolicy) -> str:
    """What a provider must be able to give: "none", or a policy's mode ("proxy", ...)."""
    return network.mode if isinstance(network, NetworkPolicy) else network


@dataclass(frozen=True)
class SandboxSpec:
    """What a sandbox must be. Plain data; providers map it onto their mechanisms."""

    limits: Limits = field(default_factory=Limits)
    network: str | NetworkPolicy = "none"
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
        if not isinstance(self.limits, Limits):
            raise InvalidArgument("limits", self.limits, "a warden.Limits, e.g. "
                                  "Limits(memory_mb=128)")
        known_network(self.network)
        if not isinstance(self.labels, Mapping):
            raise InvalidArgument("labels", self.labels, "a mapping of label names to strings")
        for key, value in self.labels.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidArgument("labels", dict(self.labels), f"strings mapped to strings; "
                                      f"{key!r}: {value!r} is not")
