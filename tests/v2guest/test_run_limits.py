"""Limits through warden.run, checked against the cgroup's own counters. These run on the
host (v1 driver) and, via scripts/v2-guest, on a cgroup-v2-only kernel: the same functions, with
the v2 files (memory.events, cpu.stat) read directly where the guest can show them."""

from __future__ import annotations

import os
import sys

import pytest
import warden
from warden.host import cgroups

from tests.conftest import require

pytestmark = pytest.mark.cgroup2guest

MiB = 1 << 20


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class Spy:
    """Records the counters of each sandbox cgroup at the moment warden.run reads its verdict
    from them (SandboxCgroup.stats), whoever made the cgroup and whenever it is removed."""

    def __init__(self, drv: cgroups.CgroupDriver) -> None:
        self.drv = drv
        self.snap: list[dict] = []
        self.fd_used: list[int | None] = []

    def install(self, monkeypatch) -> None:
        for cls in (cgroups.V1Cgroup, cgroups.V2Cgroup):
            monkeypatch.setattr(cls, "stats", self._wrap_stats(cls.stats))
            monkeypatch.setattr(cls, "dir_fd", self._wrap_dir_fd(cls.dir_fd))

    def _wrap_dir_fd(self, orig):
        def dir_fd(c):
            fd = orig(c)
            self.fd_used.append(fd)
            return fd
        return dir_fd

    def _wrap_stats(self, orig):
        def stats(c):
            st = orig(c)
            snap = {"stats": st, "path": c.path, "procs_files": c.procs_files()}
            dirs = [os.path.dirname(f) for f in c.procs_files()] or [c.path]
            for f in ("memory.events", "pids.events", "cpu.stat", "memory.swap.max"):
                for d in dirs:
                    if os.path.exists(f"{d}/{f}"):
                        text = _read(f"{d}/{f}")
                        snap[f] = (dict(line.split() for line in text.splitlines())
                                   if " " in text else text)
            self.snap.append(snap)
            return st
        return stats


def _settle() -> None:
    """Let warden finish removing released cgroups, if it removes them in the background."""
    try:
        from warden.providers.native import prepare
    except ImportError:
        return
    prepare.preparer().drain()


@pytest.fixture
def spy(monkeypatch):
    require(os.geteuid() == 0, "warden.run with cgroup limits needs root or a delegated cgroup")
    s = Spy(cgroups.driver())
    s.install(monkeypatch)
    return s


def test_memory_bomb_reason_memory_confirmed_by_the_cgroup(spy):
    r = warden.run([sys.executable, "-c", "b = []\nwhile True:\n    b.append(b'x' * (1 << 20))"],
                   limits=warden.Limits(memory_mb=48, wall_time_s=120))
    assert r.reason == "memory"
    assert "memory" in r.limits_hit
    snap = spy.snap[-1]
    assert snap["stats"].oom_kills >= 1
    if spy.drv.version == 2:
        assert int(snap["memory.events"]["oom_kill"]) >= 1
        assert snap["memory.swap.max"] == "0"


def test_fork_bomb_hits_pids(spy):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = warden.run([sys.executable, "-c", bomb], limits=warden.Limits(pids=16, wall_time_s=5))
    assert r.reason == "timeout"
    assert "pids" in r.limits_hit
    assert spy.snap[-1]["stats"].pids_limit_hit
    if spy.drv.version == 2:
        assert int(spy.snap[-1]["pids.events"]["max"]) >= 1


def test_cpu_max_throttles_a_busy_loop(spy):
    # The loop measures itself: CPU time it got over the wall time it ran.
    loop = ("import time\nt0, c0 = time.monotonic(), time.process_time()\n"
            "while time.monotonic() < t0 + 2:\n    pass\n"
            "print((time.process_time() - c0) / (time.monotonic() - t0))\n")
    r = warden.run([sys.executable, "-c", loop], limits=warden.Limits(cpus=0.2, wall_time_s=120))
    assert r.reason == "exited" and r.exit_code == 0, r.stderr
    share = float(r.stdout)
    # Unthrottled a busy loop gets about one whole CPU; at cpus=0.2 the kernel holds it near
    # 0.2. Below 0.5 proves the quota with room for slow (emulated) hosts.
    assert share < 0.5, share
    stat = spy.snap[-1]["cpu.stat"]
    assert int(stat["nr_throttled"]) >= 1
    if spy.drv.version == 2:
        usage_s = int(stat["usage_usec"]) / 1e6
        assert usage_s / r.duration_s < 0.5, (usage_s, r.duration_s)


def test_the_child_starts_inside_its_cgroup(spy):
    r = warden.run(["/bin/cat", "/proc/self/cgroup"])
    assert r.reason == "exited", r.stderr
    # The sandbox's cgroup namespace is rooted at its own cgroup: the child was in it when the
    # namespace was made, i.e. before it ran anything of its own.
    lines = r.stdout.decode().splitlines()
    assert "0::/" in lines
    if spy.drv.version == 2:
        # Placed by clone3(CLONE_INTO_CGROUP) through the directory fd, not by a pid write.
        assert spy.snap[-1]["procs_files"] == []
        assert spy.fd_used and spy.fd_used[-1] is not None
        assert lines == ["0::/"]


def test_signal_ignoring_double_forked_processes_die_at_timeout(spy):
    script = "trap '' TERM INT HUP; (trap '' TERM; sleep 300 &) ; sleep 300"
    r = warden.run(["/bin/sh", "-c", script], limits=warden.Limits(wall_time_s=1.0))
    assert r.reason == "timeout"
    _settle()
    assert not os.path.exists(spy.snap[-1]["path"])


def test_nothing_left_after_many_runs(spy):
    # Cgroups only: descriptors, mounts and processes are tests/security/test_leaks.py's.
    first = len(spy.snap)
    for _ in range(100):
        assert warden.run(["/bin/true"]).exit_code == 0
    _settle()
    used = [s["path"] for s in spy.snap[first:]]
    assert len(used) == 100
    assert [p for p in used if os.path.exists(p)] == []
