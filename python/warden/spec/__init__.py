"""What a sandbox is and what came out of it: Limits, SandboxSpec, NetworkPolicy, ExecResult
and the one verdict function. Frozen, validated data; no I/O; imports nothing of warden but errors."""

from __future__ import annotations

from warden.spec.limits import LIMIT_NAMES, NETWORK_POLICIES, Limits, parse_size
from warden.spec.network import NetworkEvent, NetworkPolicy
from warden.spec.result import REASONS, ExecResult
from warden.spec.sandbox import LABEL_KEYS, SandboxSpec
from warden.spec.verdict import Ending, judge

__all__ = ["LABEL_KEYS", "LIMIT_NAMES", "NETWORK_POLICIES", "REASONS", "Ending", "ExecResult",
           "Limits", "NetworkEvent", "NetworkPolicy", "SandboxSpec", "judge", "parse_size"]
