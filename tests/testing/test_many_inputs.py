"""Many inputs, each leaving files, threads, descriptors and processes behind, leave nothing:
not in the sandbox, not on the host. The count is bounded by time: WARDEN_FORKSERVER_INPUTS
(default 2,000; CI runs 20,000)."""

from __future__ import annotations

import os

import warden

from tests.conftest import IN_CI
from tests.plugins.test_plugins import native_ok

SETUP = '''
import os, threading, time

# What the areas held before setup (the way to warden's own read-only binds, when the host
# keeps its Python under /tmp): not an input's.
BEFORE = {"/tmp": set(os.listdir("/tmp")), "/workspace": set(os.listdir("/workspace"))}

def target(i):
    if i == "check":
        return {"tmp": sorted(set(os.listdir("/tmp")) - BEFORE["/tmp"]),
                "ws": sorted(set(os.listdir("/workspace")) - BEFORE["/workspace"]),
                "procs": sorted(p for p in os.listdir("/proc") if p.isdigit()),
                "fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count()}
    open(f"/tmp/f{i}", "w").write("x" * 100)
    open(f"/workspace/w{i}", "w").write("y")
    os.open("/dev/null", os.O_RDONLY)
    if i % 50 == 0:
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        if os.fork() == 0:
            time.sleep(30)
    return i
'''

N = int(os.environ.get("WARDEN_FORKSERVER_INPUTS", "20000" if IN_CI else "2000"))


def _host_fds() -> int:
    # Sandboxes made ahead in the background come and go on the preparer's thread: count
    # once it has nothing in hand.
    from warden.providers.native import prepare

    prepare.preparer().drain()
    return len(os.listdir("/proc/self/fd"))


def _round(n: int) -> None:
    with warden.ForkServer(SETUP, per_input=warden.Limits(wall_time_s=5)) as fs:
        first = fs.run("check").value
        outcomes: dict[str, int] = {}
        for v in fs.map(range(n), jobs=2):
            outcomes[v.outcome] = outcomes.get(v.outcome, 0) + 1
        assert outcomes == {"ok": n}
        # Each server of the map: what a fresh input sees is what the first one saw.
        for v in fs.map(["check"] * 4, jobs=2):
            assert v.value["tmp"] == [] and v.value["ws"] == []
            assert len(v.value["procs"]) == len(first["procs"])
            assert v.value["fds"] == first["fds"] and v.value["threads"] == 1


def test_many_inputs_leave_nothing_behind():
    native_ok()
    from warden.providers.registry import get_provider

    provider = get_provider("native")
    live_before = len(provider.list())
    # The host's descriptors after a round, and after another: the same (sandboxes the
    # provider makes ahead in the background are there after the first round already).
    _round(N // 2)
    fds = _host_fds()
    _round(N - N // 2)
    assert _host_fds() == fds
    assert len(provider.list()) == live_before
