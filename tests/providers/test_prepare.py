"""The preparer hands out every sandbox once, makes the next one when one ends, closes what is
not used, and removes released cgroups for real."""

from __future__ import annotations

import os
import time

import pytest
import warden
from warden.providers.native import runner
from warden.providers.native.prepare import Preparer

from tests.conftest import require

LIMITS = warden.Limits(memory_mb=64, pids=8)
KEY = ("test", LIMITS)


@pytest.fixture
def prep():
    require(os.geteuid() == 0, "creating cgroups and network namespaces needs root")
    p = Preparer(depth=2)
    yield p
    p.close()


def make():
    return runner.make_sandbox(LIMITS)


def children() -> set[int]:
    me = os.getpid()
    out = set()
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.add(int(p))
            except (OSError, IndexError, ValueError):
                pass
    return out


def wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_each_sandbox_is_handed_out_once_and_the_next_is_made_when_one_ends(prep):
    first = prep.sandbox(KEY, make)
    # Nothing is made beside a sandbox in use (it would compete with its command, and a
    # long-lived one needs no spare); its end makes the next ones.
    time.sleep(0.3)
    assert not prep._ready.get(KEY)
    out = first.box.start(["/bin/true"], [], ["/bin/true"])
    assert out["have_status"] and out["wait_status"] == 0
    prep.done(first)
    wait_until(lambda: len(prep._ready.get(KEY, ())) == 2)
    ready_pids = {r.box.pid for r in prep._ready[KEY]}
    got = [prep.sandbox(KEY, make) for _ in range(4)]
    pids = [first.box.pid] + [r.box.pid for r in got]
    assert len(set(pids)) == 5
    assert ready_pids == {got[0].box.pid, got[1].box.pid}  # the ready ones went first
    for r in got:
        out = r.box.start(["/bin/true"], [], ["/bin/true"])
        assert out["have_status"] and out["wait_status"] == 0
        prep.done(r)
    prep.drain()
    for r in [first, *got]:
        assert not os.path.exists(r.cgroup.path)


def test_drain_closes_the_ready_sandboxes_and_their_cgroups(prep):
    r = prep.sandbox(KEY, make)
    prep.done(r)  # never started: killed
    wait_until(lambda: len(prep._ready.get(KEY, ())) == 2)
    ready = list(prep._ready[KEY])
    prep.drain()
    assert not prep._ready
    mine = children()
    for x in [r, *ready]:
        assert x.box.pid not in mine and not x.box.ready()
        assert not os.path.exists(x.cgroup.path)


def test_a_shape_not_asked_for_is_closed_after_the_idle_time():
    require(os.geteuid() == 0, "creating cgroups and network namespaces needs root")
    p = Preparer(depth=1, idle_s=0.3)
    try:
        r = p.sandbox(KEY, make)
        p.done(r)
        wait_until(lambda: len(p._ready.get(KEY, ())) == 1)
        waiting = p._ready[KEY][0]
        wait_until(lambda: not waiting.box.ready() and not os.path.exists(waiting.cgroup.path))
        assert KEY not in p._wanted
    finally:
        p.close()


def test_a_sandbox_killed_while_ready_is_discarded_not_handed_out(prep):
    r = prep.sandbox(KEY, make)
    prep.done(r)
    wait_until(lambda: len(prep._ready.get(KEY, ())) == 2)
    for x in prep._ready[KEY]:
        os.kill(x.box.pid, 9)
    wait_until(lambda: not any(x.box.ready() for x in prep._ready[KEY]))
    fresh = prep.sandbox(KEY, make)
    assert fresh.box.ready()
    out = fresh.box.start(["/bin/echo", "ok"], [], ["/bin/echo"])
    assert out["stdout"] == b"ok\n"
    prep.done(fresh)


def test_a_failing_shape_raises_to_the_caller_and_is_not_retried(prep):
    calls = []

    def broken():
        calls.append(1)
        raise OSError(28, "no space")

    for _ in range(3):
        with pytest.raises(OSError):
            prep.sandbox(("broken",), broken)
    prep.drain()
    # Only the caller's own attempts: a shape whose sandbox never ended owes nothing.
    assert len(calls) == 3


def test_depth_zero_makes_every_sandbox_on_the_callers_path():
    require(os.geteuid() == 0, "creating cgroups and network namespaces needs root")
    p = Preparer(depth=0)
    try:
        r = p.sandbox(KEY, make)
        p.done(r)
        time.sleep(0.2)
        assert not p._ready and not p._wanted
    finally:
        p.close()


def test_a_background_failure_stops_that_shape_and_the_caller_sees_its_own(prep):
    made = []

    def flaky():
        if made:
            raise OSError(28, "no space")
        made.append(make())
        return made[-1]

    r = prep.sandbox(("flaky",), flaky)
    prep.done(r)  # owes the next one, whose making fails on the thread
    wait_until(lambda: ("flaky",) not in prep._wanted)
    with pytest.raises(OSError):
        prep.sandbox(("flaky",), flaky)


def test_retire_closes_the_ready_ones_of_the_shapes_it_selects(prep):
    other = ("other", LIMITS)
    for key in (KEY, other):
        prep.done(prep.sandbox(key, make))
    wait_until(lambda: len(prep._ready.get(KEY, ())) == 2 and len(prep._ready.get(other, ())) == 2)
    gone = list(prep._ready[KEY])
    prep.retire(lambda key: key == KEY)
    assert KEY not in prep._ready and KEY not in prep._wanted
    assert all(not x.box.ready() and not os.path.exists(x.cgroup.path) for x in gone)
    assert len(prep._ready[other]) == 2


def test_a_caller_does_not_wait_long_for_one_being_made(prep):
    import threading

    stuck = threading.Event()
    calls = []

    def slow():
        calls.append(threading.current_thread().name)
        if calls[-1] == "warden-prepare":
            stuck.wait(10)  # the making on the thread hangs
        return make()

    key = ("slow",)
    first = prep.sandbox(key, slow)
    prep.done(first)  # the thread now makes the next one, and hangs
    wait_until(lambda: prep._making.get(key))
    prep.wait_for_making_s = 0.3
    t = time.monotonic()
    got = prep.sandbox(key, slow)
    waited = time.monotonic() - t
    stuck.set()
    assert got.box.ready() and 0.25 < waited < 5
    assert calls[-1] == threading.current_thread().name  # made on the caller's path
    prep.done(got)
