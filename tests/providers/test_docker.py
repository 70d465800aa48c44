"""What only the Docker provider has: the container's posture as the engine reports it, a worker
killed from outside, a host process that dies with sandboxes alive, an engine restart, idle
removal and the classification of exits."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import warden
from warden.errors import MemoryLimitExceeded, TimeoutExceeded, WorkerCrashed
from warden.providers.base import SandboxSpec
from warden.providers.docker.state import state_of

from tests.conftest import require


@pytest.fixture
def engine(docker_engine):
    require(docker_engine.available, docker_engine.why or "the Docker engine does not answer")
    return docker_engine


@pytest.fixture
def own(engine):
    """A DockerProvider of the test's own (no background thread), closed at the end."""
    from warden.providers.docker import DockerProvider

    p = DockerProvider(idle_seconds=0, reconcile_interval=0)
    yield p
    p.close()


def _child_env() -> dict:
    env = dict(os.environ)
    import warden as w

    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(w.__file__)))
    return env


def test_container_posture_as_the_engine_reports_it(own):
    lim = warden.Limits(memory_mb=128, pids=20, cpus=0.5, disk_mb=16)
    h = own.create(SandboxSpec(limits=lim, labels={"tenant": "acme", "project": "p",
                                                   "environment": "ci", "purpose": "posture"}),
                   reuse_key="posture")
    info = own.api.inspect_container(state_of(h).container)
    hc, cfg = info["HostConfig"], info["Config"]
    assert hc["Memory"] == hc["MemorySwap"] == 128 << 20
    assert hc["PidsLimit"] > 20 and hc["NanoCpus"] == 500_000_000
    assert hc["NetworkMode"] == "none" and hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd")
    assert "no-new-privileges:true" in hc["SecurityOpt"]
    assert any(o.startswith("seccomp=") and "SCMP_ACT_ERRNO" in o for o in hc["SecurityOpt"])
    assert set(hc["Tmpfs"]) == {"/workspace", "/tmp"}
    assert cfg["User"] == "1000:1000"
    labels = cfg["Labels"]
    assert {k: labels[k] for k in ("tenant", "project", "environment", "purpose")} == {
        "tenant": "acme", "project": "p", "environment": "ci", "purpose": "posture"}
    assert labels["warden.id"] == h.id and labels["warden.reuse_key"] == "posture"
    assert labels["warden.version"] == warden.__version__
    assert labels["warden.owner"].split(":")[1] == str(os.getpid())
    # The quota is what the kernel enforces inside, not only what the engine was told.
    r = own.exec(h, ["sh", "-c", "df -k /workspace /tmp | tail -n 2"])
    sizes = [int(line.split()[1]) for line in r.stdout.decode().splitlines()]
    assert sum(sizes) <= 16 << 10


def test_seccomp_profile_is_warden_s_not_docker_s_default(own):
    # ptrace is allowed by Docker's default profile and refused by warden's policy.
    h = own.create(SandboxSpec())
    code = ("import ctypes; l = ctypes.CDLL(None, use_errno=True); "
            "print(l.ptrace(0, 0, 0, 0), ctypes.get_errno())")
    r = own.exec(h, ["python3", "-c", code])
    assert r.stdout.split() == [b"-1", str(errno.EPERM).encode()]


def test_worker_killed_from_outside_during_a_call(own):
    h = own.create(SandboxSpec(limits=warden.Limits(wall_time_s=60)))
    first = state_of(h).container
    own.call(h, "call_fn", {"source": "import time\ndef nap(s):\n    time.sleep(s)\n",
                            "payload": 0})
    caught = []

    def caller():
        try:
            own.call(h, "call_fn", {"name": "nap", "payload": 30})
        except WorkerCrashed as exc:
            caught.append(exc)

    t = threading.Thread(target=caller)
    t.start()
    time.sleep(1.0)  # let the request reach the worker; the outcome is the same if it has not
    own.api.kill(first, signal="SIGKILL")
    t.join(30)
    assert len(caught) == 1 and caught[0].signal == signal.SIGKILL
    assert own.call(h, "ping", {})["pong"] is True
    assert state_of(h).container != first


_ORPHAN_MAKER = """
import sys, time
from warden.providers import get_provider
from warden.providers.base import SandboxSpec
p = get_provider("docker")
h = p.create(SandboxSpec(labels={"purpose": "orphan"}))
print(h.id, h._state.container, flush=True)
time.sleep(600)
"""

_RECONCILER = """
import errno
import json
from warden.providers.docker import DockerProvider
r = DockerProvider(idle_seconds=0, reconcile_interval=0).reconcile()
print(json.dumps({"removed": r.removed, "recovered": r.recovered, "exits": r.exits}))
"""


def test_reconcile_from_a_new_process_removes_a_killed_host_s_containers(own):
    maker = subprocess.Popen([sys.executable, "-c", _ORPHAN_MAKER], stdout=subprocess.PIPE,
                             env=_child_env(), text=True)
    try:
        wid, cid = maker.stdout.readline().split()
    finally:
        maker.send_signal(signal.SIGKILL)
        maker.wait()
    # Left behind: the engine still has it (running, or ended by its worker when the host's
    # end of stdin closed; either way only reconcile removes it).
    assert own.api.containers(all=True, filters={"id": cid})
    out = subprocess.run([sys.executable, "-c", _RECONCILER], capture_output=True, text=True,
                         env=_child_env(), timeout=120, check=True)
    report = json.loads(out.stdout)
    assert wid in report["removed"] and report["exits"][wid] in ("orphaned", "exited")
    assert not own.api.containers(all=True, filters={"id": cid})


def test_reconcile_leaves_a_live_process_s_sandboxes_alone(own, provider_docker_box):
    out = subprocess.run([sys.executable, "-c", _RECONCILER], capture_output=True, text=True,
                         env=_child_env(), timeout=120, check=True)
    report = json.loads(out.stdout)
    assert provider_docker_box.id not in report["removed"]
    assert own.api.inspect_container(state_of(provider_docker_box).container)["State"]["Running"]


@pytest.fixture
def provider_docker_box(own):
    return own.create(SandboxSpec(labels={"purpose": "live"}))


def test_reconcile_classifies_oom_and_deadline_exits(own):
    h = own.create(SandboxSpec(limits=warden.Limits(memory_mb=96, wall_time_s=60)))
    with pytest.raises(MemoryLimitExceeded):
        own.call(h, "call_fn", {"source": "def bomb(_):\n    x = []\n    while True:\n"
                                          "        x.append(bytearray(8 << 20))\n"})
    assert own.reconcile().exits[h.id] == "oom"
    with pytest.raises(TimeoutExceeded):
        own.call(h, "call_fn", {"source": "def spin(_):\n    while True: pass\n"}, timeout=0.5)
    assert own.reconcile().exits[h.id] == "deadline"
    assert own.call(h, "ping", {})["pong"] is True


def test_idle_sandboxes_are_removed_unless_in_use(own):
    own.idle_seconds = 60
    idle = own.create(SandboxSpec(labels={"purpose": "idle"}), reuse_key="idle")
    busy = own.create(SandboxSpec(labels={"purpose": "busy"}), reuse_key="busy")
    later = time.monotonic() + 3600
    held, release = threading.Event(), threading.Event()

    def in_call():  # a call in progress holds the sandbox's lock
        with state_of(busy).lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=in_call)
    t.start()
    held.wait(30)
    try:
        removed = own.reap_idle(now=later)
    finally:
        release.set()
        t.join()
    assert idle.id in removed and busy.id not in removed
    assert not own.api.containers(all=True, filters={"id": state_of(idle).container})
    assert own.call(busy, "ping", {})["pong"] is True
    assert own.reap_idle(now=time.monotonic()) == []   # just used: not idle


def test_engine_restart_and_the_pool_recovers(engine, own):
    require(engine.started, "restarting the engine needs the private dockerd this run started "
                            "(unset DOCKER_HOST and set WARDEN_TEST_DOCKER=1)")
    h = own.create(SandboxSpec(labels={"purpose": "restart"}), reuse_key="restart")
    assert own.call(h, "ping", {})["pong"] is True
    engine.restart()
    require(engine.available, engine.why or "the engine did not come back")
    report = own.reconcile()
    assert report.exits[h.id] in ("crashed", "missing", "exited")
    assert own.create(h.spec, reuse_key="restart").id == h.id   # the pool still has it
    assert own.call(h, "ping", {})["pong"] is True             # with a fresh container
    assert own.reconcile().recovered == [h.id]


def test_another_provider_s_sandbox_is_listed_but_not_ours_to_use(own, engine):
    from warden.providers.docker import DockerProvider

    mine = own.create(SandboxSpec(labels={"purpose": "shown-elsewhere"}))
    other = DockerProvider(idle_seconds=0, reconcile_interval=0)
    try:
        [seen] = other.list({"purpose": "shown-elsewhere"})
        assert seen.id == mine.id and not other.usable(seen)
        with pytest.raises(WorkerCrashed, match="only its owner"):
            other.call(seen, "ping", {})
        with pytest.raises(warden.WardenError, match="belongs to warden process"):
            other.destroy(seen)
    finally:
        other.close()
    assert own.call(mine, "ping", {})["pong"] is True
