"""warden.host.cgroups against the real kernel: whichever driver this host has (v1 here, v2 in the
guest that scripts/v2-guest boots; the same test functions run in both places)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from warden import ProviderUnavailable
from warden.host import cgroups

from tests.conftest import require

pytestmark = pytest.mark.cgroup2guest

MiB = 1 << 20


def _is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture(scope="module")
def drv() -> cgroups.CgroupDriver:
    require(_is_root(), "creating cgroups needs root (or a delegated cgroup)")
    try:
        return cgroups.driver()
    except ProviderUnavailable as exc:
        require(False, f"no usable cgroup driver on this host: {exc}")
        raise


@pytest.fixture
def cg(drv):
    made = []

    def make(memory_bytes=None, pids=None, cpus=None):
        c = drv.create(memory_bytes, pids, cpus)
        made.append(c)
        return c

    yield make
    for c in made:
        c.destroy()


def _child(code: str) -> subprocess.Popen:
    """A python child that waits for one byte on stdin before running ``code``, so that the test
    can put it in a cgroup first."""
    prog = "import sys\nsys.stdin.buffer.read(1)\n" + code
    return subprocess.Popen([sys.executable, "-c", prog], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _go(p: subprocess.Popen) -> None:
    p.stdin.write(b"g")
    p.stdin.flush()


def _dirs(c: cgroups.SandboxCgroup) -> list[str]:
    return [os.path.dirname(f) for f in c.procs_files()] or [c.path]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _hierarchy_memory_v1() -> bool:
    with open("/proc/self/cgroup") as f:
        return any("memory" in line.split(":")[1].split(",") for line in f if line.strip())


# --- pure parsing ------------------------------------------------------------------------------

def test_parse_proc_cgroup_hybrid():
    text = "9:name=systemd:/\n8:pids:/\n4:memory:/a/b\n1:cpu,cpuacct:/c\n0::/u\n"
    got = cgroups.parse_proc_cgroup(text)
    assert got["memory"] == "/a/b"
    assert got["cpu"] == got["cpuacct"] == "/c"
    assert got["name=systemd"] == "/"
    assert got[""] == "/u"


def test_parse_mountinfo_picks_cgroup_mounts_and_unescapes():
    text = (
        "30 25 0:26 / /sys/fs/cgroup/cpu\\040x rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
        "31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n"
        "32 1 8:1 / / rw - ext4 /dev/vda rw\n"
    )
    got = cgroups.parse_mountinfo(text)
    assert [m.fstype for m in got] == ["cgroup", "cgroup2"]
    assert got[0].mountpoint == "/sys/fs/cgroup/cpu x"
    assert {"cpu", "cpuacct"} <= got[0].options


def test_cpu_quota():
    assert cgroups.cpu_quota_us(0.5) == 50_000
    assert cgroups.cpu_quota_us(2.0) == 200_000
    assert cgroups.cpu_quota_us(0.001) == 1_000  # the kernel's floor


# --- detection ---------------------------------------------------------------------------------

def test_driver_version_matches_proc_self_cgroup(drv):
    # Where /proc/self/cgroup lists memory on a v1 hierarchy, the v1 driver must be the one.
    assert drv.version == (1 if _hierarchy_memory_v1() else 2)
    d = drv.describe()
    assert d["version"] == drv.version
    assert {"memory", "pids"} <= set(d["controllers"])


def test_sandbox_cgroups_live_below_own_cgroup(drv, cg):
    c = cg(64 * MiB, 16, 1.0)
    own = cgroups.parse_proc_cgroup(_read("/proc/self/cgroup"))
    for d in _dirs(c):
        parent = os.path.dirname(d)
        assert os.path.basename(parent).startswith(f"warden-{os.getpid()}-")
        # The cgroup path of the parent, relative to its mount, begins with our own cgroup path
        # (or our cgroup's parent, on v2 where warden moved itself into a warden-self leaf).
        rel_paths = set(own.values())
        base = os.path.dirname(parent)
        assert any(base.endswith(r.rstrip("/")) or
                   os.path.basename(r).startswith("warden-self-") for r in rel_paths), (base, own)


# --- limits are written -------------------------------------------------------------------------

def test_swap_on_without_a_per_cgroup_swap_limit_is_refused(drv, monkeypatch):
    """Fail closed: with swap on and no way to limit it per cgroup, a memory limit would not
    bound what the sandbox holds, so no cgroup is made (and none is left behind)."""
    from warden.providers.native import prepare

    prepare.preparer().drain()  # no sandbox of an earlier test is made or removed meanwhile
    drv.create(64 * MiB, 8, 0.5).destroy()  # warden's own parent cgroups exist from here on
    from warden.host.cgroups import v1, v2

    monkeypatch.setattr(v1 if drv.version == 1 else v2, "_swap_enabled", lambda: True)
    monkeypatch.setattr(drv, "_swap_limit" if drv.version == 1 else "_swap_file", False)
    before = _leaves(drv)
    with pytest.raises(ProviderUnavailable, match="swap"):
        drv.create(64 * MiB, 8, 0.5)
    assert _leaves(drv) == before


def _leaves(drv) -> set[str]:
    out = set()
    for root in {h.own for h in drv._h.values()} if drv.version == 1 else {drv.base}:
        for d, dirs, _ in os.walk(root):
            out.update(os.path.join(d, x) for x in dirs)
    return out


def test_limits_read_back(drv, cg):
    c = cg(64 * MiB, 17, 0.5)
    if drv.version == 1:
        by = {}
        for d in _dirs(c):
            for f in ("memory.limit_in_bytes", "pids.max", "cpu.cfs_quota_us"):
                if os.path.exists(os.path.join(d, f)):
                    by[f] = d
        assert int(_read(by["memory.limit_in_bytes"] + "/memory.limit_in_bytes")) == 64 * MiB
        memsw = by["memory.limit_in_bytes"] + "/memory.memsw.limit_in_bytes"
        if os.path.exists(memsw):
            assert int(_read(memsw)) == 64 * MiB
        else:
            assert _read(by["memory.limit_in_bytes"] + "/memory.swappiness") == "0"
        assert _read(by["pids.max"] + "/pids.max") == "17"
        assert _read(by["cpu.cfs_quota_us"] + "/cpu.cfs_quota_us") == "50000"
        assert _read(by["cpu.cfs_quota_us"] + "/cpu.cfs_period_us") == "100000"
        assert c.dir_fd() is None
        assert len(c.procs_files()) >= 3
    else:
        assert int(_read(c.path + "/memory.max")) == 64 * MiB
        if os.path.exists(c.path + "/memory.swap.max"):
            assert _read(c.path + "/memory.swap.max") == "0"
        assert _read(c.path + "/memory.oom.group") == "1"
        assert _read(c.path + "/pids.max") == "17"
        assert _read(c.path + "/cpu.max") == "50000 100000"
        assert c.procs_files() == []
        fd = c.dir_fd()
        assert fd is not None and os.path.samestat(os.fstat(fd), os.stat(c.path))


def test_missing_controller_fails_closed(drv):
    if drv.version == 1:
        restricted = cgroups.V1Driver({k: h for k, h in drv.hierarchies.items() if k != "cpu"})
    else:
        restricted = cgroups.V2Driver(drv.mountpoint, drv.own_rel, controllers=("memory", "pids"))
    with pytest.raises(ProviderUnavailable, match="cpu"):
        restricted.create(64 * MiB, 16, 1.0)
    # Asking only for what is there works.
    c = restricted.create(64 * MiB, 16, None)
    c.destroy()


# --- the kernel enforces them -------------------------------------------------------------------

def test_memory_bomb_is_oom_killed(cg):
    c = cg(48 * MiB, 16, None)
    p = _child("chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))\n")
    c.attach(p.pid)
    _go(p)
    p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL
    st = c.stats()
    assert st.oom_kills >= 1
    assert st.memory_limit_hit
    assert st.peak_memory_bytes == 0 or st.peak_memory_bytes >= 40 * MiB


def test_fork_bomb_stops_at_pids_max_and_kill_ends_it(cg):
    c = cg(256 * MiB, 12, None)
    p = _child(
        "import os\n"
        "top = os.getpid()\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except BlockingIOError:\n"
        "        if os.getpid() == top:\n"
        "            print('EAGAIN', flush=True)\n"
        "            top = -1\n"
    )
    c.attach(p.pid)
    _go(p)
    line = p.stdout.readline()
    assert line.strip() == b"EAGAIN"
    assert len(c.pids()) <= 12
    assert c.stats().pids_limit_hit
    c.kill()
    assert c.pids() == []
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    # The host can still fork.
    assert subprocess.run(["true"], check=False).returncode == 0


def test_cpu_limit_throttles(cg):
    c = cg(None, None, 0.2)
    # The loop measures itself, so the interpreter's start-up (before the cgroup) is not counted.
    p = _child(
        "import time\n"
        "t0, c0 = time.monotonic(), time.process_time()\n"
        "while time.monotonic() < t0 + 1.5:\n"
        "    pass\n"
        "print((time.process_time() - c0) / (time.monotonic() - t0))\n"
    )
    c.attach(p.pid)
    _go(p)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    share = float(out)
    # Unthrottled, a busy loop gets ~100% of a CPU; at cpus=0.2 the kernel holds it near 20%.
    # 0.5 leaves room for slow (emulated) hosts while still proving the quota.
    assert share < 0.5, share
    cpu_dir = next(d for d in _dirs(c) if os.path.exists(os.path.join(d, "cpu.stat")))
    stat = dict(line.split() for line in _read(os.path.join(cpu_dir, "cpu.stat")).splitlines())
    assert int(stat["nr_throttled"]) >= 1


# --- teardown ----------------------------------------------------------------------------------

def test_kill_ends_sigterm_ignoring_stopped_and_double_forked(cg):
    c = cg(128 * MiB, 32, None)
    ignorer = _child(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    stopped = _child("import time\nprint('ready', flush=True)\ntime.sleep(600)\n")
    daemon = _child(
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "        print(os.getpid(), flush=True)\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    )
    for p in (ignorer, stopped, daemon):
        c.attach(p.pid)
        _go(p)
    assert ignorer.stdout.readline().strip() == b"ready"
    assert stopped.stdout.readline().strip() == b"ready"
    grandchild = int(daemon.stdout.readline())
    os.kill(stopped.pid, signal.SIGSTOP)
    ignorer.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    assert grandchild in c.pids()
    assert ignorer.pid in c.pids() and stopped.pid in c.pids()

    c.kill()

    assert c.pids() == []
    assert ignorer.wait(timeout=30) == -signal.SIGKILL
    assert stopped.wait(timeout=30) == -signal.SIGKILL
    # The reparented grandchild is gone (reaped by init or a subreaper, never ours to wait).
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{grandchild}") and time.monotonic() < deadline:
        try:
            if _read(f"/proc/{grandchild}/stat").split(")")[-1].split()[0] == "Z":
                break
        except FileNotFoundError:
            break
        time.sleep(0.01)
    st = _read(f"/proc/{grandchild}/stat") if os.path.exists(f"/proc/{grandchild}") else ""
    assert st == "" or st.split(")")[-1].split()[0] == "Z"


def test_destroy_kills_removes_and_is_idempotent(drv):
    c = drv.create(64 * MiB, 16, 1.0)
    p = _child("import time\ntime.sleep(600)\n")
    c.attach(p.pid)
    dirs = _dirs(c)
    assert all(os.path.isdir(d) for d in dirs)
    c.destroy()
    assert p.wait(timeout=30) == -signal.SIGKILL
    assert not any(os.path.exists(d) for d in dirs)
    c.destroy()


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
def test_many_cycles_leave_nothing_behind(drv):
    first = drv.create(64 * MiB, 16, 1.0)
    parents = [os.path.dirname(d) for d in _dirs(first)]
    first.destroy()
    fds = _fd_count()
    used = []
    for _ in range(500):
        c = drv.create(64 * MiB, 16, 1.0)
        used += _dirs(c)
        c.destroy()
    assert _fd_count() == fds
    # Other users of the driver in this process (a pool of ready cgroups) may own sb-* dirs in
    # the same parents; the ones made here must all be gone.
    assert [d for d in used if os.path.exists(d)] == []
    assert all(os.path.dirname(d) in parents for d in used)


def test_sweep_removes_only_dead_owners_empty_dirs(drv, cg):
    live = cg(64 * MiB, 16, None)  # this process's parent exists and must survive
    own_parent = os.path.dirname(_dirs(live)[0])
    base = os.path.dirname(own_parent)
    # A pid that is gone: the child just reaped. Start time 1 never matches a live process.
    gone_pid = subprocess.Popen(["true"])
    gone_pid.wait()
    leftover = os.path.join(base, f"warden-{gone_pid.pid}-1")
    stranger = os.path.join(base, f"notwarden-{os.getpid()}")
    os.mkdir(leftover)
    os.mkdir(os.path.join(leftover, "sb-1"))
    os.mkdir(stranger)
    try:
        removed = drv.sweep()
        assert leftover in removed
        assert not os.path.exists(leftover)
        assert os.path.isdir(stranger)
        assert os.path.isdir(own_parent)
        assert os.path.isdir(live.path)
    finally:
        os.rmdir(stranger)
        for p in (os.path.join(leftover, "sb-1"), leftover):
            if os.path.exists(p):
                os.rmdir(p)


# --- one command's share of a long-lived cgroup ---------------------------------------------------

def test_since_gives_what_happened_between_two_readings():
    before = cgroups.CgroupStats(oom_kills=1, memory_limit_hit=True, pids_limit_hit=True,
                                 peak_memory_bytes=90 * MiB, cpu_usage_ns=1000,
                                 memory_max_events=7, pids_max_events=2)
    same = before.since(before)
    assert (same.oom_kills, same.memory_limit_hit, same.pids_limit_hit) == (0, False, False)
    assert same.cpu_usage_ns == 0
    later = cgroups.CgroupStats(oom_kills=2, memory_limit_hit=True, pids_limit_hit=True,
                                peak_memory_bytes=95 * MiB, cpu_usage_ns=None,
                                memory_max_events=9, pids_max_events=2)
    d = later.since(before)
    assert (d.oom_kills, d.memory_limit_hit, d.pids_limit_hit) == (1, True, False)
    assert (d.memory_max_events, d.cpu_usage_ns, d.peak_memory_bytes) == (2, None, 95 * MiB)


def _run_in(c: cgroups.SandboxCgroup, code: str) -> None:
    p = _child(code)
    c.attach(p.pid)
    _go(p)
    p.communicate(timeout=120)
    assert p.returncode == 0


def test_an_oom_is_counted_once_not_for_every_later_reading(cg):
    c = cg(48 * MiB, 16, None)
    p = _child("chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))\n")
    c.attach(p.pid)
    _go(p)
    p.communicate(timeout=120)
    before = c.stats()
    assert before.oom_kills >= 1
    _run_in(c, "pass")
    d = c.stats().since(before)
    assert (d.oom_kills, d.memory_limit_hit) == (0, False)


def test_a_peak_window_measures_from_its_start_where_the_kernel_can(cg):
    """v1 resets memory.max_usage_in_bytes; v2 memory.peak per open file from Linux 6.12;
    before that there is no window, and the caller says so (peak_memory_source)."""
    c = cg(256 * MiB, 16, None)
    _run_in(c, "x = bytearray(96 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\n")
    lifetime = c.stats().peak_memory_bytes
    window = c.peak_window()
    if window is None:
        release = tuple(int(n) for n in os.uname().release.split(".")[:2])
        assert c.stats().peak_memory_bytes == 0 or release < (6, 12), os.uname().release
        assert isinstance(c, cgroups.V2Cgroup)
        return
    _run_in(c, "x = bytearray(8 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\n")
    peak = window.finish()
    assert lifetime >= 96 * MiB
    assert peak is not None and 8 * MiB <= peak < 64 * MiB, (peak, lifetime)
