"""cgroup v2 facts that only a v2-only kernel can show: run by scripts/v2-guest inside a guest
booted with cgroup_no_v1=all. On any other host these tests are not collected as run (they skip
with the reason); the harness sets WARDEN_V2_GUEST=1 and CI, so there they must pass."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from warden.host import cgroups

pytestmark = [
    pytest.mark.cgroup2guest,
    pytest.mark.skipif(os.environ.get("WARDEN_V2_GUEST") != "1",
                       reason="runs inside the cgroup-v2-only guest: scripts/v2-guest"),
]

MiB = 1 << 20
ROOT = "/sys/fs/cgroup"
NOBODY = 65534


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _keyed(path: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in _read(path).splitlines())}


@pytest.fixture(scope="module")
def drv() -> cgroups.CgroupDriver:
    d = cgroups.driver()
    assert d.version == 2
    return d


def test_only_cgroup2_is_mounted():
    with open("/proc/self/mountinfo") as f:
        kinds = [line.split(" - ")[1].split()[0] for line in f if " - " in line]
    assert "cgroup" not in kinds
    assert "cgroup2" in kinds
    assert _read("/proc/self/cgroup").splitlines()[0].startswith("0::")
    assert len(_read("/proc/self/cgroup").splitlines()) == 1


def test_every_controller_is_available_and_delegated(drv):
    avail = set(_read(f"{ROOT}/cgroup.controllers").split())
    assert {"memory", "pids", "cpu"} <= avail
    info = drv.describe()
    assert info["delegation_ok"], info
    c = drv.create(32 * MiB, 8, 0.5)
    try:
        got = set(_read(os.path.join(os.path.dirname(c.path), "cgroup.subtree_control")).split())
        assert {"memory", "pids", "cpu"} <= got
    finally:
        c.destroy()


def test_memory_bomb_with_swap_off_is_oom_killed_as_a_group(drv):
    c = drv.create(48 * MiB, 16, None)
    try:
        assert _read(os.path.join(c.path, "memory.swap.max")) == "0"
        # A bystander that allocates nothing dies too: memory.oom.group kills the sandbox whole.
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import os, sys, time
            sys.stdin.buffer.read(1)
            if os.fork() == 0:
                time.sleep(600)
            chunks = []
            while True:
                chunks.append(b"x" * (1 << 20))
            """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        c.attach(p.pid)
        p.stdin.write(b"g")
        p.stdin.flush()
        p.communicate(timeout=300)
        assert p.returncode == -signal.SIGKILL
        ev = _keyed(os.path.join(c.path, "memory.events"))
        assert ev["oom_kill"] >= 1
        assert ev["max"] >= 1
        if "oom_group_kill" in ev:
            assert ev["oom_group_kill"] >= 1
        st = c.stats()
        assert st.oom_kills == ev["oom_kill"]
        assert st.memory_limit_hit
        assert st.peak_memory_bytes >= 40 * MiB
        assert c.pids() == []  # the sleeping bystander went with it
    finally:
        c.destroy()


CLONE3 = """
import ctypes, os, struct, sys
CLONE_INTO_CGROUP = 0x200000000
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
# struct clone_args (CLONE_ARGS_SIZE_VER2, 88 bytes): flags, pidfd, child_tid, parent_tid,
# exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup.
args = ctypes.create_string_buffer(struct.pack("11Q", CLONE_INTO_CGROUP, 0, 0, 0, 17, 0, 0, 0,
                                               0, 0, fd), 88)
pid = libc.syscall(435, args, ctypes.c_size_t(88))
if pid == 0:
    # The child's first act is to exec; the kernel created it in the cgroup already.
    os.execv("/bin/cat", ["cat", "/proc/self/cgroup"])
if pid < 0:
    print("ERR", ctypes.get_errno(), flush=True)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_clone_into_cgroup_places_the_child_at_creation(drv):
    c = drv.create(64 * MiB, 8, None)
    try:
        fd = c.dir_fd()
        assert fd is not None
        r = subprocess.run([sys.executable, "-c", CLONE3, c.path], capture_output=True,
                           timeout=300, check=False)
        assert r.returncode == 0, r.stderr
        rel = "/" + os.path.relpath(c.path, ROOT)
        assert r.stdout.decode().strip() == f"0::{rel}"
    finally:
        c.destroy()


def test_clone_into_cgroup_is_charged_to_the_target_before_it_exists(drv):
    # With pids.max=0 in the target, clone3 itself fails: the new task is counted against the
    # target cgroup at creation, so there is no moment at which it runs anywhere else.
    c = drv.create(64 * MiB, 8, None)
    try:
        with open(os.path.join(c.path, "pids.max"), "w") as f:
            f.write("0")
        r = subprocess.run([sys.executable, "-c", CLONE3, c.path], capture_output=True,
                           timeout=300, check=False)
        assert r.stdout.decode().split() == ["ERR", str(11)]  # EAGAIN
        assert _keyed(os.path.join(c.path, "pids.events"))["max"] >= 1
        assert c.pids() == []
    finally:
        c.destroy()


def test_cgroup_kill_is_what_tears_down(drv):
    c = drv.create(64 * MiB, 16, None)
    try:
        assert os.path.exists(os.path.join(c.path, "cgroup.kill"))
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import os, signal, sys, time
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            sys.stdin.buffer.read(1)
            for _ in range(3):
                if os.fork() == 0:
                    os.kill(os.getpid(), signal.SIGSTOP)
            print("ready", flush=True)
            time.sleep(600)
            """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        c.attach(p.pid)
        p.stdin.write(b"g")
        p.stdin.flush()
        assert p.stdout.readline().strip() == b"ready"
        assert len(c.pids()) >= 4
        c.kill()
        assert _keyed(os.path.join(c.path, "cgroup.events"))["populated"] == 0
        assert p.wait(timeout=60) == -signal.SIGKILL
    finally:
        c.destroy()


def _delegate(path: str) -> None:
    """Make ``path`` a delegated cgroup owned by nobody, as systemd does for Delegate=yes: its
    parent hands it the controllers, and the uid owns the directory and its procs, threads
    and subtree_control files."""
    with open(os.path.join(ROOT, "cgroup.subtree_control"), "w") as f:
        f.write("+memory +pids +cpu")
    os.mkdir(path)
    for f in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(path, f), NOBODY, NOBODY)


DELEGATED = """
import json, os, subprocess, sys
from warden.host import cgroups
# A child started before warden makes its first cgroup (as a zygote would be) must not stop
# the delegation: warden moves its own descendants along into its leaf.
early = subprocess.Popen(["sleep", "600"])
d = cgroups.driver()
out = {"uid": os.geteuid(), "version": d.version, "base": d.base,
       "describe_ok": d.describe()["delegation_ok"]}
c = d.create(32 << 20, 8, 0.5)
out["leaf_uid"] = os.stat(c.path).st_uid
p = subprocess.Popen([sys.executable, "-c",
                      "import sys\\nsys.stdin.buffer.read(1)\\nb=[]\\nwhile 1: b.append(b'x'*(1<<20))"],
                     stdin=subprocess.PIPE)
c.attach(p.pid)
p.stdin.write(b"g"); p.stdin.flush(); p.wait()
out["bomb_rc"] = p.returncode
out["oom_kills"] = c.stats().oom_kills
out["cpu_max"] = open(os.path.join(c.path, "cpu.max")).read().strip()
out["self_cgroup"] = open("/proc/self/cgroup").read().strip()
out["early_cgroup"] = open(f"/proc/{early.pid}/cgroup").read().strip()
early.kill(); early.wait()
c.destroy()
out["left"] = os.path.exists(c.path)
d.close()
print(json.dumps(out), flush=True)
"""


def test_delegation_to_an_unprivileged_subtree(drv, tmp_path):
    # As systemd does for Delegate=yes: a cgroup owned by the service's uid, with its
    # cgroup.procs, cgroup.subtree_control and cgroup.threads, and the service started in it.
    deleg = os.path.join(ROOT, f"warden-test-deleg-{os.getpid()}")
    before_root = set(os.listdir(ROOT))
    _delegate(deleg)
    try:
        env = dict(os.environ, HOME=str(tmp_path))
        os.chmod(tmp_path, 0o777)
        p = subprocess.Popen(
            [sys.executable, "-c", "import sys\nsys.stdin.buffer.read(1)\nexec(sys.argv[1])",
             DELEGATED],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            user=NOBODY, group=NOBODY, extra_groups=[], env=env, cwd=str(tmp_path))
        with open(os.path.join(deleg, "cgroup.procs"), "w") as f:
            f.write(str(p.pid))
        out, err = p.communicate(b"g", timeout=300)
        assert p.returncode == 0, err.decode()
        r = json.loads(out.decode().strip().splitlines()[-1])
        assert r["uid"] == NOBODY
        assert r["version"] == 2
        assert r["base"] == deleg
        assert r["describe_ok"]
        assert r["leaf_uid"] == NOBODY
        assert r["bomb_rc"] == -signal.SIGKILL
        assert r["oom_kills"] >= 1
        assert r["cpu_max"] == "50000 100000"
        # warden moved itself into a leaf of its own below the delegated cgroup.
        rel = "/" + os.path.relpath(deleg, ROOT)
        assert r["self_cgroup"].startswith(f"0::{rel}/warden-self-")
        assert r["early_cgroup"] == r["self_cgroup"]
        assert r["left"] is False
        # Nothing was created outside the delegated subtree.
        assert set(os.listdir(ROOT)) - before_root == {os.path.basename(deleg)}
        left = [n for n in os.listdir(deleg) if os.path.isdir(os.path.join(deleg, n))]
        assert all(n.startswith("warden-self-") for n in left), left
    finally:
        for dirpath, dirnames, _ in sorted(os.walk(deleg), key=lambda t: -len(t[0])):
            for n in dirnames:
                try:
                    os.rmdir(os.path.join(dirpath, n))
                except OSError:
                    pass  # reported by the assertions above when it matters
        os.rmdir(deleg)


def test_nothing_left_after_many_runs_with_processes(drv):
    before = set(os.listdir(ROOT))
    parent = None
    used = []
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(60):
        c = drv.create(32 * MiB, 8, 1.0)
        used.append(c.path)
        parent = os.path.dirname(c.path)
        p = subprocess.Popen(["/bin/sh", "-c", "read x; sleep 600 & sleep 600"],
                             stdin=subprocess.PIPE)
        c.attach(p.pid)
        p.stdin.write(b"\n")
        p.stdin.flush()
        c.destroy()
        p.wait(timeout=60)
        p.stdin.close()
    assert len(os.listdir("/proc/self/fd")) == fds
    assert [p for p in used if os.path.exists(p)] == []
    assert set(os.listdir(ROOT)) <= before | {os.path.basename(parent)}


REFUSED = """
import json
from warden import ProviderUnavailable
from warden.host import cgroups
try:
    cgroups.driver().create(32 << 20, 8, None)
    print(json.dumps({"refused": False}))
except ProviderUnavailable as exc:
    print(json.dumps({"refused": True, "message": str(exc)}))
"""


def test_delegation_fails_closed_next_to_a_foreign_process(drv, tmp_path):
    # Another program shares the delegated cgroup: the kernel will not hand controllers down
    # while it is there, and warden must not move it. No sandbox, and a message that says why.
    deleg = os.path.join(ROOT, f"warden-test-foreign-{os.getpid()}")
    _delegate(deleg)
    foreign = subprocess.Popen(["sleep", "600"])
    try:
        with open(os.path.join(deleg, "cgroup.procs"), "w") as f:
            f.write(str(foreign.pid))
        os.chmod(tmp_path, 0o777)
        p = subprocess.Popen(
            [sys.executable, "-c", "import sys\nsys.stdin.buffer.read(1)\nexec(sys.argv[1])",
             REFUSED],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            user=NOBODY, group=NOBODY, extra_groups=[], env=dict(os.environ, HOME=str(tmp_path)),
            cwd=str(tmp_path))
        with open(os.path.join(deleg, "cgroup.procs"), "w") as f:
            f.write(str(p.pid))
        out, err = p.communicate(b"g", timeout=300)
        assert p.returncode == 0, err.decode()
        r = json.loads(out.decode().strip().splitlines()[-1])
        assert r["refused"] is True
        assert str(foreign.pid) in r["message"]
        assert _read(os.path.join(deleg, "cgroup.subtree_control")) == ""
        assert _read(f"/proc/{foreign.pid}/cgroup") == "0::/" + os.path.relpath(deleg, ROOT)
    finally:
        foreign.kill()
        foreign.wait()
        for dirpath, dirnames, _ in sorted(os.walk(deleg), key=lambda t: -len(t[0])):
            for n in dirnames:
                os.rmdir(os.path.join(dirpath, n))
        os.rmdir(deleg)
