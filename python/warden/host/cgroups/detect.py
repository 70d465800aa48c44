"""Which driver this host needs, detected once per process from /proc/self/cgroup and
/proc/self/mountinfo."""

from __future__ import annotations

import atexit
import os
import threading

from warden.errors import ProviderUnavailable
from warden.host.cgroups.base import (
    _CONTROLLERS_V1,
    CgroupDriver,
    Mount,
    _read,
    parse_mountinfo,
    parse_proc_cgroup,
)
from warden.host.cgroups.v1 import V1Driver, _Hierarchy
from warden.host.cgroups.v2 import V2Driver

# ----------------------------------------------------------------------------------------------
# Detection.


def _resolve(mount: Mount, path: str) -> str | None:
    """The directory of cgroup ``path`` (as /proc/self/cgroup shows it) under ``mount``."""
    root = mount.root.rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root):]
    elif root and path == root:
        path = "/"
    elif root and root != "/":
        return None  # the mount shows another part of the hierarchy
    return os.path.normpath(mount.mountpoint + "/" + path.lstrip("/"))


def detect(proc_cgroup: str, mountinfo: str) -> CgroupDriver:
    """Pick the driver from the texts of /proc/self/cgroup and /proc/self/mountinfo.

    v2 wins when the cgroup this process runs in has the memory and pids controllers there
    (pure v2 hosts, or hybrids that moved them); otherwise v1 when those are mounted as v1
    hierarchies. ``WARDEN_CGROUP`` = ``v1``/``v2`` forces one (for tests and odd hosts)."""
    own = parse_proc_cgroup(proc_cgroup)
    mounts = parse_mountinfo(mountinfo)
    force = os.environ.get("WARDEN_CGROUP", "")
    v2_mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    v2_driver = None
    v2_why = "no cgroup2 filesystem is mounted"
    if v2_mount is not None and "" in own:
        d = _resolve(v2_mount, own[""])
        if d is not None and os.path.isdir(d):
            try:
                avail = set(_read(os.path.join(d, "cgroup.controllers")).split())
            except OSError as exc:
                avail, v2_why = set(), f"cannot read {d}/cgroup.controllers: {exc.strerror}"
            if {"memory", "pids"} <= avail:
                v2_driver = V2Driver(v2_mount.mountpoint, d[len(v2_mount.mountpoint):] or "/")
            else:
                v2_why = f"the cgroup2 hierarchy has only {sorted(avail)} at {d}"
    hier: dict[str, _Hierarchy] = {}
    for m in mounts:
        if m.fstype != "cgroup":
            continue
        ctrls = frozenset(o for o in m.options if o in _CONTROLLERS_V1)
        for c in ctrls:
            if c in own and c not in hier:
                d = _resolve(m, own[c])
                if d is not None and os.path.isdir(d):
                    hier[c] = _Hierarchy(ctrls, m.mountpoint, d)
    v1_ok = {"memory", "pids"} <= set(hier)
    if force == "v2" or (force != "v1" and v2_driver is not None):
        if v2_driver is None:
            raise ProviderUnavailable("cgroup v2 with the memory and pids controllers", v2_why)
        return v2_driver
    if v1_ok:
        return V1Driver(hier)
    raise ProviderUnavailable(
        "cgroups with the memory and pids controllers",
        f"{v2_why}, and the v1 hierarchies mounted offer only {sorted(hier) or 'none'}; "
        "mount cgroup2 with those controllers delegated to warden's cgroup")


_driver: CgroupDriver | None = None
_driver_pid = -1
_driver_lock = threading.Lock()


def driver() -> CgroupDriver:
    """The cgroup driver of this host, detected once per process (a forked child detects
    again: its parent cgroup name carries the owner's pid)."""
    global _driver, _driver_pid
    pid = os.getpid()
    if _driver is not None and _driver_pid == pid:
        return _driver
    with _driver_lock:
        if _driver is None or _driver_pid != pid:
            with open("/proc/self/cgroup") as f:
                pc = f.read()
            with open("/proc/self/mountinfo") as f:
                mi = f.read()
            d = detect(pc, mi)
            # Leftovers of crashed warden processes: empty dirs only, owners checked dead.
            d.sweep()
            _driver, _driver_pid = d, pid
            atexit.register(_close_at_exit, d, pid)
    return _driver


def _close_at_exit(d: CgroupDriver, pid: int) -> None:
    if os.getpid() == pid:
        d.close()

