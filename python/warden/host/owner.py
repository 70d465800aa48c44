"""Which warden process owns a thing left on the host, and whether that process still lives.

A pid alone is not an identity: the kernel recycles pids. A pid with its start time (field 22 of
/proc/<pid>/stat, in clock ticks since boot) names one process for ever, so a cgroup directory
or a container labelled with both can be told apart from one whose owner died, even after the
pid was handed to another process.
"""

from __future__ import annotations

import os
import socket

__all__ = ["alive", "owner_alive", "owner_id", "parse_owner", "proc_starttime"]


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: the fields resume after the last ')'.
    try:
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def alive(pid: int, starttime: int) -> bool:
    """True while the process ``pid`` that started at ``starttime`` runs."""
    return proc_starttime(pid) == starttime


def owner_id(pid: int | None = None) -> str:
    """``hostname:pid:starttime``: one process of one machine, for labels that other machines
    may read too (a Docker engine can be shared)."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{proc_starttime(pid)}"


def parse_owner(owner: str) -> tuple[str, int, str] | None:
    """``(hostname, pid, starttime)`` of an :func:`owner_id`, or None if it is not one."""
    host, _, rest = owner.rpartition(":")
    host, _, pid = host.rpartition(":")
    if not host or not pid.isdigit():
        return None
    return host, int(pid), rest


def owner_alive(owner: str) -> bool | None:
    """True/False for an :func:`owner_id` of this host; None when it names another host,
    whose processes this one cannot see."""
    parsed = parse_owner(owner)
    if parsed is None:
        return False
    host, pid, start = parsed
    if host != socket.gethostname():
        return None
    return start.isdigit() and alive(pid, int(start))
