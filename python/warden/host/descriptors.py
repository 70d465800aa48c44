"""This process's budget of file descriptors.

Every live native sandbox holds a few descriptors in the process that made it (its socket,
its pidfd, its mount namespace, on cgroup v2 its cgroup directory), and making one briefly
needs a few more. The common default soft limit of 1024 then caps a process at a few hundred
sandboxes, though the hard limit is usually far higher. So, as servers do, the soft
RLIMIT_NOFILE is raised to the hard limit when the native provider is first used
(``WARDEN_RAISE_NOFILE=0`` keeps it as it is); and when descriptors still run out, the error
says which limit it was and how to raise it.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
from collections.abc import Callable
from typing import TypeVar

from warden.errors import HostResourceExhausted, SandboxSetupError

__all__ = ["EXHAUSTED", "at_step", "exhausted", "raise_soft_limit"]

T = TypeVar("T")

log = logging.getLogger("warden")

# errno values that mean "out of descriptors": this process's table, or the whole system's.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (unless WARDEN_RAISE_NOFILE=0); the
    (soft, hard) limits as they are afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if os.environ.get("WARDEN_RAISE_NOFILE", "1") == "0" or hard == resource.RLIM_INFINITY \
            or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        # Refused (a seccomp policy, an LSM): sandboxes still work, only fewer at once.
        log.warning("could not raise the soft RLIMIT_NOFILE from %d to its hard limit %d: %s; "
                    "fewer sandboxes can be alive at once", soft, hard, exc)
        return soft, hard
    log.debug("raised the soft RLIMIT_NOFILE from %d to its hard limit %d", soft, hard)
    return hard, hard


def exhausted(step: str, err: int) -> HostResourceExhausted:
    """The error for running out of descriptors (``err`` EMFILE or ENFILE) at ``step`` of
    making a sandbox."""
    if err == errno.ENFILE:
        return HostResourceExhausted(
            "fs.file-max", _read_int("/proc/sys/fs/file-max"), step,
            "the whole host has run out of open files; close what holds them, or raise the "
            "system-wide limit (sysctl -w fs.file-max=N)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return HostResourceExhausted(
        "RLIMIT_NOFILE", soft, step,
        f"this process may have {soft} files open at once (hard limit {hard}) and each live "
        "sandbox holds a few; close sandboxes it no longer needs, or start it with a higher "
        "hard limit (`ulimit -Hn N; ulimit -n N` in its shell, LimitNOFILE=N in a systemd "
        "unit, --ulimit nofile=N:N for a container)")


def at_step(step: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``fn(*args, **kwargs)``, one step of making a sandbox, with running out of
    descriptors in it (OSError, or SandboxSetupError, which names its own step) turned into
    HostResourceExhausted."""
    try:
        return fn(*args, **kwargs)
    except (OSError, SandboxSetupError) as exc:
        if exc.errno not in EXHAUSTED:
            raise
        where = exc.step if isinstance(exc, SandboxSetupError) else step
        raise exhausted(where, exc.errno) from exc


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        # Out of descriptors ourselves, or no procfs: the error is still clear without it.
        return None
