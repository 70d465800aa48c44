"""The pool's bounds, seen by callers in real sandboxes of the native provider: a caller
waits for a busy pool at most its call's timeout, and the engine's metrics show the wait, the
calls in flight and the workers started."""

from __future__ import annotations

import re
import threading
import time

import pytest
import warden

from tests.plugins.test_plugins import COUNTER, make_plugin, native_ok


@pytest.fixture
def engine():
    native_ok()
    e = warden.Engine()
    yield e
    e.close()


def _metric(engine, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", engine.metrics_text(),
                  re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def _call_in_thread(p, *args) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = p.call(*args)
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _until(cond, what: str) -> None:
    for _ in range(400):
        if cond():
            return
        time.sleep(0.025)
    pytest.fail(f"not reached within 10 s: {what}")


def test_a_caller_waits_for_a_busy_pool_at_most_its_timeout(tmp_path, engine):
    d = make_plugin(tmp_path, "busy1", COUNTER, resources={"timeout_seconds": 0.5},
                    pool={"min_workers": 1, "max_workers": 1})
    p = engine.load(d)
    pool = p.pool()
    held = pool.acquire()               # the pool's only worker, busy with another caller
    t, out = _call_in_thread(p, "count")
    t.join(30)
    alive = t.is_alive()
    pool.release(held)                  # lets a caller that would wait for ever go on
    t.join(30)
    assert not alive, "the caller waited past its timeout for a worker"
    err = out.get("error")
    assert isinstance(err, warden.TimeoutExceeded), out
    assert "for a free worker" in str(err) and "pool.max_workers" in str(err)
    # Nothing was killed for it: the busy worker serves on.
    assert engine.provider.usable(held.handle)
    assert p.call("count") == 1
    assert _metric(engine, "warden_limits_hit_total", plugin="busy1", limit="timeout") == 1


def test_a_waiting_caller_gets_the_worker_that_comes_back(tmp_path, engine):
    d = make_plugin(tmp_path, "busy2", COUNTER, resources={"timeout_seconds": 60},
                    pool={"min_workers": 1, "max_workers": 1})
    p = engine.load(d)
    pool = p.pool()
    held = pool.acquire()
    t, out = _call_in_thread(p, "count")
    _until(lambda: len(pool._queue) == 1, "the caller waits for the pool")
    assert _metric(engine, "warden_calls_in_flight", plugin="busy2") == 1
    pool.release(held)
    t.join(30)
    assert out == {"result": 1}
    assert _metric(engine, "warden_calls_in_flight", plugin="busy2") == 0
    # Every acquire was timed: the load's check of the entry point, the test's, the caller's.
    assert _metric(engine, "warden_worker_wait_seconds_count", plugin="busy2") == 3


def test_worker_starts_and_restarts_are_counted(tmp_path, engine):
    d = make_plugin(tmp_path, "churn", COUNTER,
                    pool={"min_workers": 2, "max_workers": 2, "max_calls_per_worker": 1})
    p = engine.load(d)
    assert _metric(engine, "warden_worker_starts_total", plugin="churn", kind="start") == 2
    assert _metric(engine, "warden_worker_starts_total", plugin="churn", kind="restart") == 0
    # Each call wears its worker out (max_calls_per_worker: 1); the next start replaces it.
    assert [p.call("count") for _ in range(3)] == [1, 1, 1]
    assert len(p.workers()) == 2        # back to min_workers: the last one replaced too
    assert _metric(engine, "warden_worker_starts_total", plugin="churn", kind="start") == 2
    assert _metric(engine, "warden_worker_starts_total", plugin="churn", kind="restart") == 3


def test_the_wait_is_a_histogram_of_every_call(tmp_path, engine):
    p = engine.load(make_plugin(tmp_path, "hist", COUNTER))
    for _ in range(5):
        p.call("count")
    text = engine.metrics_text()
    assert "# TYPE warden_worker_wait_seconds histogram" in text
    assert "# TYPE warden_calls_in_flight gauge" in text
    assert "# TYPE warden_worker_starts_total counter" in text
    # The load's check of the entry point took a worker too.
    assert _metric(engine, "warden_worker_wait_seconds_count", plugin="hist") == 6
    assert _metric(engine, "warden_worker_wait_seconds_bucket", plugin="hist", le="+Inf") == 6


class _Handles:
    """A provider stand-in for the pool's own bookkeeping (no sandbox needed to order
    callers): every create() is a new live handle."""

    def create(self, spec, **kw):
        from warden.providers.base import SandboxHandle

        return SandboxHandle(id=f"fake-{id(spec)}", provider="fake", spec=spec, labels={})

    def __init__(self) -> None:
        self.gone: set[str] = set()

    def usable(self, handle) -> bool:
        return handle.id not in self.gone

    def destroy(self, handle) -> None:
        self.gone.add(handle.id)


def test_waiting_callers_are_served_before_a_caller_that_comes_back():
    from warden.plugins.manifest import PoolSettings
    from warden.plugins.pool import Pool

    pool = Pool(_Handles(), None, PoolSettings(min_workers=1, max_workers=1), key="fifo")
    pool.fill()
    w = pool.acquire(5.0)
    got: dict = {}
    waiter = threading.Thread(target=lambda: got.setdefault("w", pool.acquire(30.0)))
    waiter.start()
    _until(lambda: len(pool._queue) == 1, "the second caller waits")
    pool.release(w)
    # Asking again at once: the waiting caller has the worker, this one waits its turn.
    with pytest.raises(warden.TimeoutExceeded, match="for a free worker"):
        pool.acquire(0.05)
    waiter.join(30)
    assert got["w"] is w
