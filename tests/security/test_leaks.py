"""Thousands of sandboxes leave nothing behind on the host."""

from __future__ import annotations

import os

import warden
from warden import cgroups, prepare


def _snapshot():
    # Network namespaces kept ready by the preparer are not leaks (their number varies).
    fds = sorted(f for f in os.listdir("/proc/self/fd")
                 if not _link(f"/proc/self/fd/{f}").startswith("net:["))
    # warden never mounts in the host's namespace; other software on the host may (a
    # dockerd started by the provider tests), so only mounts of the kinds a sandbox makes,
    # or anything below the staging root, would count as warden's.
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line for line in f if " - tmpfs " in line or " - proc " in line
                        or " /tmp " in line)
    children = _children(os.getpid())
    cg = []
    mine = f"warden-{os.getpid()}-"
    for parent in set(cgroups.driver().describe()["parents"].values()):
        for name in os.listdir(parent):
            if name.startswith(mine):
                cg.extend(x for x in os.listdir(os.path.join(parent, name)) if x.startswith("sb-"))
    return fds, mounts, children, sorted(cg)


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_two_thousand_runs_leave_nothing_behind():
    warden.run(["/bin/true"])  # warm up: cached descriptors (warden-init) are opened once
    prepare.preparer().drain()
    before = _snapshot()
    for i in range(2000):
        r = warden.run(["/bin/true"] if i % 2 else ["/bin/sh", "-c", "sleep 10 & exit 3"])
        assert r.reason == "exited", (i, r)
    # Removal of cgroups runs in the background, and a few are kept ready: wait for the one
    # and remove the others, then nothing of warden's may remain.
    prepare.preparer().drain()
    after = _snapshot()
    assert after[0] == before[0], "descriptors leaked"
    assert after[1] == before[1], "mounts leaked"
    # Long-lived helpers of earlier tests (a provider's zygote) may be children already.
    assert after[2] == before[2], "child processes left (zombies or live)"
    assert after[3] == [], "cgroups left"
