"""Rate limiting, retry and the pipeline, with an injected clock (no sleeping, no timing)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from warden import (
    MemoryLimitExceeded,
    PluginError,
    RateLimitExceeded,
    TimeoutExceeded,
    WorkerCrashed,
)
from warden.calls.metrics import WardenMetrics
from warden.calls.middleware import (
    CallContext,
    Metrics,
    Pipeline,
    RateLimit,
    RateLimiter,
    Retry,
    TokenBucket,
    pipeline_for,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ctx(action: str = "go", tenant: str | None = None, plugin: str = "p") -> CallContext:
    return CallContext(plugin=plugin, action=action, tenant=tenant)


def test_token_bucket_refills_at_the_rate():
    bucket = TokenBucket(10, 1.0, now=0.0)
    assert all(bucket.take(0.0) == 0 for _ in range(10))
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.05) == pytest.approx(0.05)
    assert bucket.take(0.1) == 0
    assert bucket.take(100.0) == 0
    assert bucket.tokens == pytest.approx(9)  # capped at capacity, then one taken


def test_rate_limit_raises_with_retry_after_and_recovers():
    clock = FakeClock()
    limiter = RateLimiter(3, 60.0, clock=clock)
    for _ in range(3):
        limiter.acquire("k")
    with pytest.raises(RateLimitExceeded) as info:
        limiter.acquire("k")
    assert info.value.retry_after == pytest.approx(20.0)
    clock.now += 19.9
    with pytest.raises(RateLimitExceeded):
        limiter.acquire("k")
    clock.now += 0.2
    limiter.acquire("k")


def test_rate_limit_is_per_plugin_and_tenant():
    clock = FakeClock()
    mw = RateLimit(1, 10.0, clock=clock)
    pipe = Pipeline([mw])
    assert pipe(ctx(tenant="a"), lambda c: "ok") == "ok"
    assert pipe(ctx(tenant="b"), lambda c: "ok") == "ok"
    assert pipe(ctx(tenant="a", plugin="other"), lambda c: "ok") == "ok"
    with pytest.raises(RateLimitExceeded) as info:
        pipe(ctx(tenant="a"), lambda c: "ok")
    assert "tenant 'a'" in str(info.value) and "'p'" in str(info.value)


def test_rate_limiter_bounds_its_keys():
    clock = FakeClock()
    limiter = RateLimiter(1, 1.0, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.acquire(i)
        clock.now += 0.001
    assert len(limiter) <= 100
    # The most recent key's bucket survived eviction: it is still empty.
    with pytest.raises(RateLimitExceeded):
        limiter.acquire(999)


def test_rate_limiter_is_thread_safe():
    limiter = RateLimiter(1000, 3600.0, clock=FakeClock())
    refused = []

    def worker():
        for _ in range(500):
            try:
                limiter.acquire("shared")
            except RateLimitExceeded:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refused) == 1000  # exactly capacity granted out of 2000 tries


def flaky(failures: list[BaseException]):
    calls = []

    def terminal(c: CallContext):
        calls.append(c.attempt)
        if failures:
            raise failures.pop(0)
        return "done"

    return terminal, calls


def test_retry_retries_crashes_of_idempotent_actions_with_backoff():
    sleeps: list[float] = []
    retry = Retry(3, 0.05, ["read"], sleep=sleeps.append)
    terminal, calls = flaky([WorkerCrashed("died", signal=9), WorkerCrashed("died", signal=9)])
    assert Pipeline([retry])(ctx("read"), terminal) == "done"
    assert calls == [1, 2, 3]
    assert sleeps == pytest.approx([0.05, 0.1])


def test_retry_gives_up_after_attempts():
    retry = Retry(2, 0.0, ["read"], sleep=lambda s: None)
    terminal, calls = flaky([WorkerCrashed("a"), WorkerCrashed("b"), WorkerCrashed("c")])
    with pytest.raises(WorkerCrashed, match="b"):
        Pipeline([retry])(ctx("read"), terminal)
    assert calls == [1, 2]


@pytest.mark.parametrize("exc", [TimeoutExceeded("t"), MemoryLimitExceeded("m"),
                                 PluginError("ValueError", "v")])
def test_retry_never_retries_other_errors(exc):
    retry = Retry(5, 0.0, ["read"], sleep=lambda s: None)
    terminal, calls = flaky([exc])
    with pytest.raises(type(exc)):
        Pipeline([retry])(ctx("read"), terminal)
    assert calls == [1]


def test_retry_never_retries_non_idempotent_actions():
    retry = Retry(5, 0.0, ["read"], sleep=lambda s: None)
    terminal, calls = flaky([WorkerCrashed("died")])
    with pytest.raises(WorkerCrashed):
        Pipeline([retry])(ctx("write"), terminal)
    assert calls == [1]


def test_pipeline_order_and_metrics():
    metrics = WardenMetrics()
    clock = FakeClock()
    order: list[str] = []

    class Tag:
        def __init__(self, name):
            self.name = name

        def call(self, c, nxt):
            order.append(self.name)
            return nxt(c)

    pipe = Pipeline([Metrics(metrics), Tag("a"), RateLimit(2, 60.0, clock=clock), Tag("b")])
    assert pipe(ctx(), lambda c: 7) == 7
    assert order == ["a", "b"]
    with pytest.raises(PluginError):
        pipe(ctx(), lambda c: (_ for _ in ()).throw(PluginError("KeyError", "k")))
    with pytest.raises(RateLimitExceeded):
        pipe(ctx(), lambda c: 7)
    assert metrics.calls.value(plugin="p", action="go") == 3
    assert metrics.errors.value(plugin="p", type="PluginError") == 1
    assert metrics.errors.value(plugin="p", type="RateLimitExceeded") == 1
    assert metrics.limits_hit.value(plugin="p", limit="rate") == 1
    assert metrics.latency.count(plugin="p") == 3
    with pytest.raises(TypeError):
        Pipeline([object()])


def test_a_bound_pipeline_runs_each_call_through_every_middleware():
    """Pipeline.bind composes once; every call through the result sees the middlewares in
    order, with the call's own context (its payload and op included)."""
    metrics = WardenMetrics()
    seen: list[tuple[str, object, str]] = []

    class Spy:
        def call(self, c, nxt):
            seen.append((c.action, c.payload, c.op))
            return nxt(c)

    chain = Pipeline([Metrics(metrics), Spy()]).bind(lambda c: c.payload * 2)
    assert chain(CallContext("p", "a", payload=2)) == 4
    assert chain(CallContext("p", "b", payload=[1], op="batch")) == [1, 1]
    assert seen == [("a", 2, "call"), ("b", [1], "batch")]
    assert metrics.calls.value(plugin="p", action="a") == 1
    assert metrics.calls.value(plugin="p", action="b") == 1
    assert metrics.latency.count(plugin="p") == 2


def test_async_pipeline():
    metrics = WardenMetrics()
    sleeps: list[float] = []

    async def asleep(s):
        sleeps.append(s)

    pipe = Pipeline([Metrics(metrics), RateLimit(10, 1.0, clock=FakeClock()),
                     Retry(2, 0.5, ["go"], asleep=asleep)])
    failures = [WorkerCrashed("once")]

    async def terminal(c):
        if failures:
            raise failures.pop()
        return c.attempt

    assert asyncio.run(pipe.acall(ctx(), terminal)) == 2
    assert sleeps == [0.5]
    assert metrics.calls.value(plugin="p", action="go") == 1

    class SyncOnly:
        def call(self, c, nxt):
            return nxt(c)

    with pytest.raises(TypeError, match="acall"):
        asyncio.run(Pipeline([SyncOnly()]).acall(ctx(), terminal))


def test_pipeline_for_a_manifest():
    from warden.plugins.manifest import parse_manifest

    m = parse_manifest("name: t\nresources: {rate_limit: {calls: 2, period_seconds: 60}}\n"
                       "retry: {attempts: 3, backoff_seconds: 0, idempotent_actions: [read]}\n")
    metrics = WardenMetrics()
    pipe = pipeline_for(m, metrics, clock=FakeClock())
    assert [type(x) for x in pipe.middlewares] == [Metrics, RateLimit, Retry]
    failures = [WorkerCrashed("once")]

    def terminal(c):
        if failures:
            raise failures.pop()
        return c.attempt

    assert pipe(CallContext("t", "read"), terminal) == 2  # retried, one token spent
    assert pipe(CallContext("t", "read"), terminal) == 1
    with pytest.raises(RateLimitExceeded):
        pipe(CallContext("t", "read"), terminal)
    assert metrics.limits_hit.value(plugin="t", limit="rate") == 1
    unlimited = parse_manifest("name: t\nresources: {rate_limit: null}\n")
    assert pipeline_for(unlimited).middlewares == ()
