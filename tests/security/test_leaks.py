"""Thousands of sandboxes leave nothing behind on the host.

The runs happen in a fresh interpreter, so that background work of other tests in this
process (engines, pools, reapers) cannot move its descriptors or children while we count."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import warden

CHECK = textwrap.dedent('''
    import json, os, sys
    import warden
    from warden.host import cgroups, state
    from warden.providers.native import prepare

    def link(path):
        try:
            return os.readlink(path)
        except OSError:
            return ""

    def children(pid):
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

    areas = os.path.join(state.state_dir(), "areas") + "/"

    def others(point):
        """A mount point in another process's area or under a dockerd's root."""
        if point.startswith(areas):
            return point[len(areas):].split("-", 1)[0] != str(os.getpid())
        return "/warden-dockerd" in point

    def snapshot():
        # Network namespaces kept ready by the preparer are not leaks (their number varies).
        # What each descriptor is, not its number: the numbers shift as ready namespaces come
        # and go; listdir's own descriptor is left out.
        fds = sorted(t for t in (link(f"/proc/self/fd/{f}") for f in os.listdir("/proc/self/fd"))
                     if not t.startswith("net:[") and not t.endswith("/fd"))
        # Mounts of the kinds a sandbox makes count. In the host's namespace warden mounts
        # only in its own area; other warden processes (the test run that started this one
        # makes sandboxes ahead in the background) mount in theirs, a dockerd in its data
        # root: those are not this process's.
        with open("/proc/self/mountinfo") as f:
            mounts = sorted(l for l in f if (" - tmpfs " in l or " - proc " in l or " /tmp " in l)
                            and not others(l.split(" ")[4]))
        cg = []
        mine = f"warden-{os.getpid()}-"
        for parent in set(cgroups.driver().describe()["parents"].values()):
            for name in os.listdir(parent):
                if name.startswith(mine):
                    cg += [x for x in os.listdir(os.path.join(parent, name)) if x.startswith("sb-")]
        return {"fds": fds, "mounts": mounts, "children": children(os.getpid()), "cgroups": sorted(set(cg))}

    n = int(sys.argv[1])
    warden.run(["/bin/true"])  # warm up: cached descriptors (warden-init) are opened once
    prepare.preparer().drain()
    before = snapshot()
    bad = []
    for i in range(n):
        argv = ["/bin/true"] if i % 2 else ["/bin/sh", "-c", "sleep 10 & exit 3"]
        r = warden.run(argv)
        if r.reason != "exited":
            bad.append([i, r.reason])
    # Removal of cgroups runs in the background, and a few are kept ready: wait for the one
    # and remove the others; then nothing of warden's may remain.
    prepare.preparer().drain()
    print(json.dumps({"before": before, "after": snapshot(), "bad": bad}))
''')


def test_two_thousand_runs_leave_nothing_behind():
    out = subprocess.run([sys.executable, "-c", CHECK, "2000"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    before, after = res["before"], res["after"]
    assert res["bad"] == []
    assert after["fds"] == before["fds"], "descriptors leaked"
    assert after["mounts"] == before["mounts"], "mounts leaked"
    assert after["children"] == before["children"] == [], "child processes left"
    assert after["cgroups"] == [], "cgroups left"


def test_the_check_sees_a_leak():
    # The same check must fail when something is left: keep a sandbox's cgroup on purpose.
    leak = CHECK.replace("prepare.preparer().drain()\nprint(",
                         "prepare.preparer().drain()\nkeep = cgroups.driver().create(1 << 26, 4, 0.5)\nprint(")
    assert leak != CHECK
    out = subprocess.run([sys.executable, "-c", leak, "10"], capture_output=True, text=True,
                         timeout=120)
    res = json.loads(out.stdout)
    assert len(res["after"]["cgroups"]) == 1
    assert warden  # the package under test is the one the subprocess imports
