"""What a sandbox may use: Limits, validated when made, and sizes as people write them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from warden.errors import InvalidArgument

__all__ = ["BOUNDS", "LIMIT_NAMES", "NETWORK_POLICIES", "Limits", "parse_size"]

NETWORK_POLICIES = ("none",)
LIMIT_NAMES = ("memory", "pids", "disk", "file_size", "cpu_time")

# Upper bounds that no sane request exceeds; a larger value is a typo or an attack on the host.
_MAX_MB = 1 << 20          # 1 TiB
_MAX_PIDS = 1 << 22        # the kernel's PID_MAX_LIMIT
_MAX_CPUS = 1024.0
_MAX_SECONDS = 7 * 24 * 3600.0
_MAX_OPEN_FILES = 1 << 20  # the kernel's default fs.nr_open

# The least and the most each field of Limits allows; front ends (the command line, manifests)
# check what people type against the same figures.
BOUNDS = {
    "memory_mb": (4, _MAX_MB),
    "pids": (1, _MAX_PIDS),
    "cpus": (0.01, _MAX_CPUS),
    "wall_time_s": (0.001, _MAX_SECONDS),
    "cpu_time_s": (1, _MAX_SECONDS),
    "disk_mb": (1, _MAX_MB),
    "open_files": (16, _MAX_OPEN_FILES),
    "file_size_mb": (1, _MAX_MB),
}
_WHOLE = frozenset({"memory_mb", "pids", "disk_mb", "open_files", "file_size_mb"})
_OPTIONAL = frozenset({"cpu_time_s", "file_size_mb"})


def _check_number(name: str, value: object, lo: float, hi: float, *, integer: bool,
                  optional: bool) -> None:
    if value is None and optional:
        return
    # NaN fails every comparison and infinity the bound: the range check sees to both.
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (integer and not isinstance(value, int)) or not lo <= value <= hi):
        kind = "a whole number" if integer else "a finite number"
        raise InvalidArgument(name, value, f"Limits.{name} takes {kind} from {lo} to {hi}"
                              + (", or None" if optional else ""))


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox. Every field is enforced by the kernel. A value out of
    range is an InvalidArgument naming the field (e.g. ``.argument == "memory_mb"``)."""

    memory_mb: int = 256
    pids: int = 64
    cpus: float = 1.0
    wall_time_s: float = 10.0
    cpu_time_s: float | None = None
    disk_mb: int = 64
    open_files: int = 256
    file_size_mb: int | None = None

    def __post_init__(self) -> None:
        for name, (lo, hi) in BOUNDS.items():
            _check_number(name, getattr(self, name), lo, hi, integer=name in _WHOLE,
                          optional=name in _OPTIONAL)


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20,
          "MB": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


def parse_size(text: str, *, default_unit: str = "M") -> int:
    """'128M' -> bytes. A bare number is in ``default_unit``."""
    s = str(text).strip().upper()
    num = s.rstrip("KMGIB")
    unit = s[len(num):] or default_unit
    if unit not in _UNITS or not num:
        raise ValueError(f"not a size: {text!r} (use e.g. 64M, 1G, 512K)")
    try:
        value = float(num)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 64M, 1G, 512K)") from None
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"size must be positive: {text!r}")
    return int(value * _UNITS[unit])
