"""What a sandbox must be: SandboxSpec, plain frozen data that every provider maps onto its
own mechanisms, and the label keys that listing and reuse go by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from warden.spec.limits import Limits

__all__ = ["LABEL_KEYS", "SandboxSpec"]

# The labels every sandbox may carry; reuse and listing go by them.
LABEL_KEYS = ("tenant", "project", "environment", "purpose")


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
