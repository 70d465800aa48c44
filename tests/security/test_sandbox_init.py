"""A long-lived sandbox's pid 1 is warden's own init, not the worker: orphans are reaped, so
they cannot fill the pids limit as zombies, and the worker's own fatal signals end it as they
end any process (a pid namespace's init ignores, from inside, every signal it has no handler
for) and come back to the caller exactly."""

from __future__ import annotations

import signal

import pytest
import warden
from warden.errors import WorkerCrashed

from tests.plugins.test_plugins import native_ok

# Also in the cgroup-v2-only guest (scripts/v2-guest): there the init is placed with
# clone3(CLONE_INTO_CGROUP) by the zygote's maker.
pytestmark = pytest.mark.cgroup2guest

PROCS = '''
def procs(_):
    import os

    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    comm, rest = f.read().rsplit(")", 1)
            except OSError:
                continue  # ended meanwhile
            out.append([int(p), rest.split()[0], comm.split("(", 1)[1]])
    return out
'''


def test_orphans_are_reaped_and_never_fill_the_pids_limit():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(pids=64)) as box:
        # Each command leaves an orphan that ends after it: more of them than the limit.
        for _ in range(80):
            r = box.exec(["sh", "-c", "sleep 0.05 </dev/null >/dev/null 2>&1 &"])
            assert (r.exit_code, r.reason) == (0, "exited"), r
        box.call(PROCS)
        for _ in range(400):
            left = [p for p in box.call("procs") if p[2] == "sleep" or p[1] == "Z"]
            if not left:
                break
            box.call("def pause(_):\n    import time\n    time.sleep(0.05)\n")
        assert left == []
        # Only the init and the worker are left: no zombie, no process counted against the
        # limit that nobody will reap.
        assert sorted(p[0] for p in box.call("procs")) == [1, 2]
        r = box.exec(["sh", "-c", "echo still"])
        assert (r.exit_code, r.stdout) == (0, b"still\n")


def test_pid_1_is_warden_init_and_the_worker_its_child():
    native_ok()
    with warden.Sandbox() as box:
        me = box.call("def me(_):\n    import os\n    return os.getpid(), os.getppid()\n")
        assert me == [2, 1]
        box.call(PROCS)
        first = {p[0]: p[2] for p in box.call("procs")}
        assert first[1] == "warden-init"


DIE = """
def die(_):
    import os
    import signal
    import time

    {code}
    time.sleep(5)
    return "survived"
"""


@pytest.mark.parametrize("code, sig", [
    ("os.abort()", signal.SIGABRT),
    ("os.kill(os.getpid(), signal.SIGSEGV)", signal.SIGSEGV),
    ("os.kill(os.getpid(), signal.SIGTERM)", signal.SIGTERM),
    ("os.kill(os.getpid(), signal.SIGKILL)", signal.SIGKILL),
    # Sent to pid 1, it reaches the worker: the init forwards it.
    ("os.kill(1, signal.SIGTERM)", signal.SIGTERM),
    ("os.kill(1, signal.SIGINT)", signal.SIGINT),
], ids=["abort", "segv", "term", "kill", "term-to-init", "int-to-init"])
def test_the_workers_own_fatal_signal_ends_it_and_is_reported(code, sig):
    native_ok()
    with warden.Sandbox() as box:
        with pytest.raises(WorkerCrashed) as info:
            box.call(DIE.format(code=code))
        assert (info.value.signal, info.value.exit_code) == (sig, None)
        assert signal.Signals(sig).name in str(info.value)


def test_the_workers_exit_status_is_reported():
    native_ok()
    with warden.Sandbox() as box:
        with pytest.raises(WorkerCrashed) as info:
            box.call("def leave(_):\n    import os\n    os._exit(3)\n")
        assert (info.value.signal, info.value.exit_code) == (None, 3)


def test_a_crashed_sandbox_refuses_further_calls():
    native_ok()
    with warden.Sandbox() as box:
        with pytest.raises(WorkerCrashed):
            box.call(DIE.format(code="os.abort()"))
        with pytest.raises(WorkerCrashed):
            box.exec(["true"])
