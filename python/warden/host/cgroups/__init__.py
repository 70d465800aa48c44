"""cgroups: one interface, two drivers (v2 files, v1 through cgroupspy), detected at start.

Where warden's cgroups live
    Below the cgroup the current process already runs in, per hierarchy, as read from
    ``/proc/self/cgroup``; never at a hierarchy's root unless warden itself runs there. Each
    warden process owns one parent per hierarchy, named ``warden-<pid>-<starttime>``, and every
    sandbox gets a leaf ``sb-<n>`` below it::

        <own cgroup>/warden-<pid>-<starttime>/sb-<n>

    The start time (field 22 of /proc/<pid>/stat) makes the name unique even after the pid is
    reused, so :meth:`CgroupDriver.sweep` can tell a crashed owner's leftovers from a live
    process's parent. warden never removes or writes to a cgroup it did not create, with one
    exception on v2 that delegation requires: enabling controllers in the ``subtree_control`` of
    the cgroup it runs in (see :class:`V2Driver`).

Hot path
    Creating and destroying one sandbox cgroup happens on every run, so the per-sandbox work is
    a handful of mkdir/open/write/rmdir calls on files warden owns; ``bench/cgroups.py`` measures
    it.
"""

from __future__ import annotations

from warden.host.cgroups.base import (
    CgroupDriver,
    CgroupStats,
    PeakWindow,
    SandboxCgroup,
    cpu_quota_us,
    parse_mountinfo,
    parse_proc_cgroup,
)
from warden.host.cgroups.detect import detect, driver
from warden.host.cgroups.v1 import V1Cgroup, V1Driver
from warden.host.cgroups.v2 import V2Cgroup, V2Driver

__all__ = [
    "CgroupDriver",
    "CgroupStats",
    "PeakWindow",
    "SandboxCgroup",
    "V1Cgroup",
    "V1Driver",
    "V2Cgroup",
    "V2Driver",
    "cpu_quota_us",
    "detect",
    "driver",
    "parse_mountinfo",
    "parse_proc_cgroup",
]
