"""The values of `warden run`'s flags as people type them, checked as given.

Each function here is an argparse ``type``: argparse names the flag in front of the message
(``argument --memory: 0 is below the least allowed, 4M``), so the message says what is wrong
with the value and what is allowed. The ranges are those of warden.spec.limits.BOUNDS: the
command line allows exactly what Limits does, no more, and rounds nothing.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from warden.spec.limits import BOUNDS, NETWORK_POLICIES, parse_size

__all__ = ["LIMIT_FLAGS", "byte_count", "count", "cwd", "env_pair", "network", "number",
           "provider", "size_mb", "whole"]

_MIB = 1 << 20


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def _mib_text(mb: int) -> str:
    return f"{mb >> 10}G" if mb >= 1024 and mb % 1024 == 0 else f"{mb}M"


def _in_range(text: str, value: float, field: str, show: Callable[[float], str]) -> None:
    lo, hi = BOUNDS[field]
    if value < lo:
        raise _bad(f"{text} is below the least allowed, {show(lo)}")
    if value > hi:
        raise _bad(f"{text} is above the most allowed, {show(hi)}")


def size_mb(field: str) -> Callable[[str], int]:
    """A size for a limit kept in whole MiB (``64M``, ``1G``; a bare number is MiB)."""

    def size(text: str) -> int:
        try:
            nbytes = parse_size(text)
        except ValueError:
            raise _bad(f"{text!r} is not a size: write e.g. 64M or 1G (a bare number is "
                       "MiB)") from None
        if nbytes % _MIB:
            # Rounding would give the sandbox more or less than was asked for.
            raise _bad(f"{text} is not a whole number of MiB: this limit is set in MiB, so "
                       "write e.g. 1M or 64M")
        mb = nbytes // _MIB
        _in_range(text, mb, field, lambda v: _mib_text(int(v)))
        return mb

    return size


def whole(field: str) -> Callable[[str], int]:
    """A count (processes, open files)."""

    def count(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise _bad(f"{text!r} is not a whole number") from None
        _in_range(text, value, field, lambda v: f"{v:g}")
        return value

    return count


def number(field: str, unit: str = "") -> Callable[[str], float]:
    """A finite number (CPUs; seconds with ``unit="s"``)."""

    def value_of(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _bad(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise _bad(f"{text} is not a finite number")
        _in_range(text, value, field, lambda v: f"{v:g}{unit}")
        return value

    return value_of


def env_pair(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq or not name:
        raise _bad(f"{text!r} is not NAME=VALUE: write e.g. --env LANG=C.UTF-8")
    return name, value


def cwd(text: str) -> str:
    if not text.startswith("/"):
        raise _bad(f"{text!r} is not an absolute path inside the sandbox: write e.g. "
                   "/workspace/src")
    return text


def count(text: str) -> int:
    """A whole number of at least 1 (``--max-connections``; NetworkPolicy checks the most)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise _bad(f"{text!r} is not a whole number") from None
    if value < 1:
        raise _bad(f"{text} is below the least allowed, 1")
    return value


def byte_count(text: str) -> int:
    """A number of bytes (``--max-bytes``): ``50M``, ``1G``, ``512K``; a bare number is
    bytes."""
    try:
        value = parse_size(text, default_unit="B")
    except ValueError as exc:
        raise _bad(str(exc)) from None
    if value < 1:
        raise _bad(f"{text} is below the least allowed, 1 byte")
    return value


def network(text: str) -> str:
    if text not in NETWORK_POLICIES:
        raise _bad(f"unknown network policy {text!r}; known: {', '.join(NETWORK_POLICIES)}")
    return text


def provider(text: str) -> str:
    from warden.providers.registry import available

    known = ["auto", *available()]
    if text not in known:
        raise _bad(f"unknown provider {text!r}; known: {', '.join(known)}")
    return text


# The limits of `warden run` and `warden fuzz`:
# (flag, Limits field, argparse type, metavar, help)
LIMIT_FLAGS = (
    ("--memory", "memory_mb", size_mb("memory_mb"), "SIZE",
     "memory limit in whole MiB, e.g. 128M (default 256M)"),
    ("--disk", "disk_mb", size_mb("disk_mb"), "SIZE",
     "writable space for /workspace and /tmp in whole MiB, e.g. 64M (default 64M)"),
    ("--file-size", "file_size_mb", size_mb("file_size_mb"), "SIZE",
     "largest file the command may write, in whole MiB (default: no limit of its own)"),
    ("--pids", "pids", whole("pids"), "N", "most processes at once (default 64)"),
    ("--open-files", "open_files", whole("open_files"), "N",
     "most open descriptors per process (default 256)"),
    ("--cpus", "cpus", number("cpus"), "N", "CPU share, e.g. 0.5 (default 1.0)"),
    ("--timeout", "wall_time_s", number("wall_time_s", "s"), "S",
     "wall time limit in seconds (default 10)"),
    ("--cpu-time", "cpu_time_s", number("cpu_time_s", "s"), "S",
     "CPU time limit in seconds (default: none)"),
)
