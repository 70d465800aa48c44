"""Sandbox.pause / resume / paused on the native provider: real processes in a real sandbox,
frozen by its cgroup (v1 freezer here; v2 cgroup.freeze inside scripts/v2-guest, which runs
this module too). Progress is measured as the CPU time the kernel charged to the sandbox's
processes and as a loop counter the code inside writes, never as a speed."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import warden
from warden import SandboxPaused, WorkerCrashed
from warden.providers.native.state import state_of

from tests.plugins.test_plugins import native_ok

pytestmark = pytest.mark.cgroup2guest

# A busy loop that writes its counter to the workspace now and then.
LOOP = ("import os\nn = 0\nwhile True:\n    n += 1\n    if n % 20000 == 0:\n"
        "        with open('count.tmp', 'w') as f:\n            f.write(str(n))\n"
        "        os.replace('count.tmp', 'count')\n")


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=60, pids=64)) as box:
        yield box


def _cgroup(box: warden.Sandbox):
    return state_of(box._handle).cgroup


def _freezer_file(box: warden.Sandbox) -> str:
    cg = _cgroup(box)
    dirs = getattr(cg, "_dirs", None)
    if dirs is not None:  # v1
        return os.path.join(dirs["freezer"], "freezer.state")
    return os.path.join(cg.path, "cgroup.freeze")


def _cpu_ticks(pids: list[int]) -> int:
    """utime + stime of ``pids`` in clock ticks (proc(5), /proc/pid/stat fields 14 and 15)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _wait_for(pred, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def _count(box: warden.Sandbox) -> int:
    try:
        return int(box.files.read("count") or b"0")
    except FileNotFoundError:
        return 0


def test_a_busy_loop_makes_no_progress_while_paused_and_goes_on_after(sb):
    sb.spawn(["python3", "-c", LOOP])
    first = _wait_for(lambda: _count(sb), "the loop's first count")
    _wait_for(lambda: _count(sb) > first, "the loop's progress")  # it runs
    pids = _cgroup(sb).pids()
    assert not sb.paused
    sb.pause()
    assert sb.paused
    ticks = _cpu_ticks(pids)
    time.sleep(1.0)
    assert _cpu_ticks(pids) == ticks, "a process of a paused sandbox got CPU time"
    with pytest.raises(SandboxPaused, match="paused"):
        sb.files.read("count")
    sb.resume()
    assert not sb.paused
    at_resume = _count(sb)
    _wait_for(lambda: _count(sb) > at_resume, "the loop's progress after resume")
    _wait_for(lambda: _cpu_ticks(pids) > ticks, "CPU time charged again after resume")


def test_every_process_of_a_spawn_is_frozen(sb):
    sb.spawn(["sh", "-c", "python3 -c \"$L\" & python3 -c \"$L\" & python3 -c \"$L\"; wait"],
             env={"L": "while True: pass"})
    _wait_for(lambda: len(_cgroup(sb).pids()) >= 6, "three loops started")
    pids = _cgroup(sb).pids()
    sb.pause()
    ticks = _cpu_ticks(pids)
    time.sleep(1.0)
    assert _cpu_ticks(pids) == ticks
    sb.resume()
    _wait_for(lambda: _cpu_ticks(pids) > ticks, "the loops running again")


def test_every_request_is_refused_while_paused_and_pause_is_idempotent(sb):
    p = sb.spawn(["sleep", "60"])
    sb.pause()
    sb.pause()  # already paused: nothing happens
    for op in (lambda: sb.exec(["true"]), lambda: sb.call("def f(x):\n    return x\n", 1),
               lambda: sb.spawn(["true"]), lambda: sb.files.write("a", b"x"),
               lambda: sb.processes(), p.poll, lambda: sb.run_python("1")):
        with pytest.raises(SandboxPaused, match=sb.id):
            op()
    sb.resume()
    sb.resume()  # not paused: nothing happens
    assert sb.exec(["echo", "ok"]).stdout == b"ok\n"
    assert p.poll() is None


def _comms(box: warden.Sandbox) -> list[str]:
    out = []
    for pid in _cgroup(box).pids():
        try:
            with open(f"/proc/{pid}/comm") as f:
                out.append(f.read().strip())
        except FileNotFoundError:
            pass
    return out


def test_close_while_paused_leaves_nothing_behind():
    native_ok()
    box = warden.Sandbox(limits=warden.Limits(wall_time_s=600, pids=64))
    box.spawn(["python3", "-c", "while True: pass"])
    # A request in flight when the sandbox is paused, then closed: it ends with the sandbox
    # at once, not at its timeout.
    failed: list[BaseException] = []

    def in_flight() -> None:
        try:
            box.exec(["sleep", "600"], timeout=300)
        except WorkerCrashed as exc:
            failed.append(exc)

    t = threading.Thread(target=in_flight)
    t.start()
    _wait_for(lambda: "sleep" in _comms(box), "the exec's process started")
    pids, freezer = _cgroup(box).pids(), _freezer_file(box)
    box.pause()
    box.close()
    t.join(timeout=30)
    assert not t.is_alive() and failed, "the request in flight did not end with the sandbox"
    _wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids),
              "every process of the sandbox gone", timeout=10)
    _wait_for(lambda: not os.path.exists(os.path.dirname(freezer)), "its cgroup removed",
              timeout=10)
    box.close()  # again: nothing


# Inside the sandbox: every way to reach a freezer file and thaw itself.
THAW = r"""
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
out = {}
os.makedirs("m", exist_ok=True)
for fs, opts in (("sysfs", None), ("cgroup", b"freezer"), ("cgroup2", None)):
    r = libc.mount(fs.encode(), b"m", fs.encode(), 0, opts)
    out["mount " + fs] = "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
    if r == 0:
        libc.umount2(b"m", 2)
for root in ("/sys/fs/cgroup", "/sys", "m"):
    for d, _dirs, files in os.walk(root):
        for name in files:
            if name in ("freezer.state", "cgroup.freeze"):
                p = os.path.join(d, name)
                try:
                    with open(p, "w") as f:
                        f.write("THAWED" if name == "freezer.state" else "0")
                    out[p] = "ok"
                except OSError as e:
                    out[p] = errno.errorcode[e.errno]
print(json.dumps(out))
"""


def test_the_sandbox_cannot_reach_or_write_its_freezer_file(sb):
    r = sb.exec(["python3", "-c", THAW])
    assert r.exit_code == 0, r.stderr
    tried = json.loads(r.stdout)
    assert {"mount sysfs", "mount cgroup", "mount cgroup2"} <= set(tried)
    assert "ok" not in tried.values(), tried
    # The file itself, on the host: root's, writable by root alone, and the sandbox's
    # processes run as a host uid that is not root.
    freezer = _freezer_file(sb)
    st = os.stat(freezer)
    assert st.st_uid == 0 and not st.st_mode & 0o022
    for pid in _cgroup(sb).pids():
        with open(f"/proc/{pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert "0" not in uids, f"pid {pid} runs as host root"
    sb.pause()
    with open(freezer) as f:
        assert f.read().strip() in ("FROZEN", "1")


LIBS = "/usr/lib/x86_64-linux-gnu"


def _uncache(top: str) -> None:
    """Drop the page cache of the files in ``top`` (theirs alone): the sandbox's read of them
    is then charged to its own cgroup, whoever read them before."""
    for name in os.listdir(top):
        try:
            fd = os.open(os.path.join(top, name), os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _file_cache(box: warden.Sandbox) -> int:
    """The page cache of files (not tmpfs) charged to the sandbox, from memory.stat."""
    cg = _cgroup(box)
    dirs = getattr(cg, "_dirs", None)
    path = os.path.join(dirs["memory"] if dirs else cg.path, "memory.stat")
    with open(path) as f:
        stat = dict(line.split() for line in f)
    if dirs:  # v1
        return int(stat["cache"]) - int(stat["shmem"])
    return int(stat["file"]) - int(stat["shmem"])


def test_reclaim_gives_page_cache_back_with_the_processes_alive(sb):
    p = sb.spawn(["python3", "-c", "import sys, time\nsys.stdin.read()\nprint('alive')\n"])
    _uncache(LIBS)
    sb.exec(["sh", "-c", f"cat {LIBS}/*.so* >/dev/null 2>&1; true"], timeout=60)
    cache, before = _file_cache(sb), _cgroup(sb).memory_usage()
    given = sb.pause(reclaim=True)
    after = _cgroup(sb).memory_usage()
    assert before is not None and after is not None and 0 <= given
    # Where the files' pages are cached (not over the v2 guest's uncached 9p root), most of
    # them go back to the host.
    if cache > 16 << 20:
        assert given >= cache // 2 and _file_cache(sb) < cache // 4, (cache, given)
    sb.resume()
    p.close_stdin()
    assert p.wait(timeout=20).stdout == b"alive\n"


def test_pause_arguments_are_checked(sb):
    with pytest.raises(warden.InvalidArgument, match="reclaim"):
        sb.pause(reclaim="yes")  # type: ignore[arg-type]
    assert not sb.paused
