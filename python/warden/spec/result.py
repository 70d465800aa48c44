"""What came out of a command: ExecResult and the reasons a command can end for."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_OUTPUT_CAP", "PEAK_SOURCES", "REASONS", "ExecResult", "exec_output_cap"]

REASONS = ("exited", "timeout", "memory", "seccomp", "signaled")
# What a command may print on each of stdout and stderr before the rest is cut off.
DEFAULT_OUTPUT_CAP = 16 << 20
# Where ExecResult.peak_memory_bytes came from:
#   "exec"     the sandbox cgroup's peak over this command alone (every process in the
#              sandbox, the page cache and files in its memory-backed areas included)
#   "process"  the largest resident set among the command's own processes: the cgroup's peak
#              could not be reset for this command and did not rise during it
#   "none"     nothing was measured (0)
PEAK_SOURCES = ("exec", "process", "none")
# The least of each stream Sandbox.exec keeps, however small the sandbox.
_MIN_EXEC_OUTPUT = 64 << 10


def exec_output_cap(memory_mb: int, asked: int | None) -> int:
    """What one exec in a long-lived sandbox keeps of each of stdout and stderr: ``asked``
    (all of what fits when None), but at most a sixteenth of the sandbox's memory limit (the
    worker holds both streams and their encoding inside that limit), and never less than
    64 KiB unless asked. The frame cap clamps it further (warden.wire.replies)."""
    most = max(_MIN_EXEC_OUTPUT, (memory_mb << 20) // 16)
    return most if asked is None else min(asked, most)


@dataclass
class ExecResult:
    """What one command in a sandbox did.

    ``stdout``/``stderr`` hold at most the output cap; ``*_truncated`` says the command printed
    more, ``*_dropped`` how many bytes more. ``peak_memory_bytes`` is this command's peak, as
    ``peak_memory_source`` says (one of PEAK_SOURCES). ``egress_bytes_up``/``_down`` are the
    bytes warden's egress relayed for the sandbox while the command ran (to and from the
    world; 0 for network "none" and for providers without a policy engine)."""

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
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    peak_memory_source: str = "none"
    # The command's own accounting: user and system CPU seconds of it and its waited-for
    # children, and the bytes it wrote to stdout and stderr (kept and dropped).
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    egress_bytes_up: int = 0
    egress_bytes_down: int = 0

    @property
    def ok(self) -> bool:
        return self.reason == "exited" and self.exit_code == 0
