"""What one exec in a long-lived sandbox did, as every provider reports it.

A provider sends the command with the output cap it chose (``output_cap``), reads the
sandbox's counters before and after it, and hands what it saw to ``exec_result``: so a
native sandbox and a container describe the same command the same way, and each result
describes that command alone, never what earlier ones did in the same sandbox.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from warden.errors import ProtocolError
from warden.spec.limits import Limits
from warden.spec.result import ExecResult, exec_output_cap
from warden.spec.verdict import Ending, exec_peak, judge
from warden.wire.replies import exec_output_cap as frame_fit
from warden.wire.replies import parse_exec

__all__ = ["During", "counters", "exec_result", "output_cap"]


def output_cap(limits: Limits, frame_cap: int, asked: int | None) -> int:
    """The cap on each of stdout and stderr for one exec: what the caller asked for (all
    that fits when None), at most a sixteenth of the sandbox's memory limit, and clamped so
    that both streams fit one reply frame of ``frame_cap`` bytes."""
    return frame_fit(frame_cap, exec_output_cap(limits.memory_mb, asked))


@dataclass(frozen=True)
class During:
    """What the sandbox's counters say of the time the command ran (differences of two
    readings, never totals over the sandbox's life)."""

    oom_killed: bool = False
    memory_limit_hit: bool = False
    pids_limit_hit: bool = False
    peak_window: int | None = None   # the peak since it was reset at the start, if it could be
    peak_before: int = 0             # the sandbox's lifetime peak before and after the command
    peak_after: int = 0


def exec_result(reply: object | None, cap: int, during: During, took: float) -> ExecResult:
    """The ExecResult of one exec: ``reply`` is the worker's (checked here against ``cap``),
    or None when the worker itself was killed for memory while the command ran."""
    r = None if reply is None else parse_exec(reply, cap)
    peak, source = exec_peak(window=during.peak_window, before=during.peak_before,
                             after=during.peak_after,
                             process=r.max_rss_bytes if r is not None else 0)
    if r is None:
        return ExecResult(None, signal.SIGKILL, b"", b"", "memory", frozenset({"memory"}),
                          took, peak, peak_memory_source=source)
    reason, hit = judge(Ending(
        signal=r.signal, timed_out=r.timed_out, oom_killed=during.oom_killed,
        memory_limit_hit=during.memory_limit_hit, pids_limit_hit=during.pids_limit_hit,
        disk_full=r.disk_full))
    return ExecResult(r.exit_code, r.signal, r.stdout, r.stderr, reason, hit, took, peak,
                      r.stdout_truncated, r.stderr_truncated, r.stdout_dropped,
                      r.stderr_dropped, source, r.cpu_user_s, r.cpu_system_s,
                      len(r.stdout) + r.stdout_dropped, len(r.stderr) + r.stderr_dropped)


def counters(reply: object, key: str) -> dict[str, int]:
    """A container's cgroup counters as its worker read them (Docker's exec reply): a small map of names to
    non-negative ints, else a hostile reply."""
    value = reply.get(key) if isinstance(reply, dict) else None
    if value is None:
        return {}
    if (not isinstance(value, dict) or len(value) > 16
            or not all(isinstance(k, str) and type(v) is int and v >= 0
                       for k, v in value.items())):
        raise ProtocolError(f"the exec result's {key!r} is not a map of counters; the worker "
                            "is broken or hostile")
    return value
