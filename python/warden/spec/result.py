"""What came out of a command: ExecResult and the reasons a command can end for."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_OUTPUT_CAP", "REASONS", "ExecResult"]

REASONS = ("exited", "timeout", "memory", "seccomp", "signaled")
# What a command may print on each of stdout and stderr before the rest is cut off.
DEFAULT_OUTPUT_CAP = 16 << 20


@dataclass
class ExecResult:
    """What one command in a sandbox did."""

    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    reason: str
    limits_hit: frozenset[str] = field(default_factory=frozenset)
    duration_s: float = 0.0
    peak_memory_bytes: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.reason == "exited" and self.exit_code == 0
