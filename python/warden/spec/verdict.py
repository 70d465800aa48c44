"""The one verdict at the end of a run: why a command ended and which limits it reached.

Every provider reduces what it saw (the wait status, whether the deadline passed, the cgroup's
counters, the writable area) to the same few facts and asks this module; so a native sandbox
and a container report the same reason for the same end.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass

__all__ = ["Ending", "exec_peak", "judge"]


@dataclass(frozen=True)
class Ending:
    """What a provider saw when a command ended. ``signal`` is None when it exited."""

    signal: int | None
    timed_out: bool = False
    oom_killed: bool = False          # the cgroup counted an OOM kill during this command
    memory_limit_hit: bool = False    # the cgroup hit its memory ceiling, killed or not
    pids_limit_hit: bool = False      # a fork or thread was refused at the pids ceiling
    disk_full: bool = False           # the quota'd writable area had no block left
    cpu_over: bool = False            # CPU time used reached the cpu_time_s limit


def judge(end: Ending) -> tuple[str, frozenset[str]]:
    """``(reason, limits_hit)`` for ``end``: exactly one reason of spec.result.REASONS, and
    the limits reached even when the command survived them."""
    sig = end.signal
    if end.timed_out:
        reason = "timeout"
    elif sig is None:
        reason = "exited"
    elif sig == _signal.SIGSYS:
        reason = "seccomp"
    elif sig == _signal.SIGKILL and end.oom_killed:
        reason = "memory"
    else:
        reason = "signaled"
    hit = set()
    if end.oom_killed or end.memory_limit_hit:
        hit.add("memory")
    if end.pids_limit_hit:
        hit.add("pids")
    if end.disk_full:
        hit.add("disk")
    if sig == _signal.SIGXFSZ:
        hit.add("file_size")
    if sig == _signal.SIGXCPU or end.cpu_over:
        hit.add("cpu_time")
    return reason, frozenset(hit)


def exec_peak(*, window: int | None, before: int, after: int, process: int) -> tuple[int, str]:
    """``(bytes, source)`` of one command's peak memory in a long-lived sandbox, the source
    one of spec.result.PEAK_SOURCES. ``window``: the cgroup's peak since the host reset it at
    the command's start (None where the kernel cannot reset it); ``before``/``after``: the
    cgroup's peak over the sandbox's life around the command (0 when unknown); ``process``:
    the largest resident set of the command's own processes."""
    if window is not None:
        return window, "exec"
    if after > before:
        return after, "exec"  # the sandbox's highest point was reached during this command
    if process > 0:
        return process, "process"
    return 0, "none"
