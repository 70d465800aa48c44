"""Middleware around every plugin call: rate limiting, retry of crashes, metrics.

A middleware is an object with ``call(ctx, next)`` (and ``acall(ctx, next)`` for the async
path), where ``next(ctx)`` runs the rest of the pipeline and finally the call itself.
``Pipeline([RateLimit(...), Retry(...), Metrics(...)])`` composes them in list order: the
first one sees the call first.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from warden.calls.metrics import WardenMetrics
from warden.errors import (
    DiskQuotaExceeded,
    MemoryLimitExceeded,
    PidsLimitExceeded,
    RateLimitExceeded,
    TimeoutExceeded,
    WorkerCrashed,
)

__all__ = [
    "LIMIT_OF_ERROR",
    "CallContext",
    "Metrics",
    "Pipeline",
    "RateLimit",
    "RateLimiter",
    "Retry",
    "TokenBucket",
]


@dataclass(slots=True)
class CallContext:
    """What a middleware knows about one call: ``payload`` is the call's payload (the list of
    items for a batch), ``op`` the worker operation ("call" or "batch")."""

    plugin: str
    action: str
    tenant: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    batch_size: int | None = None
    attempt: int = 1
    op: str = "call"
    payload: Any = None


Next = Callable[[CallContext], Any]
AsyncNext = Callable[[CallContext], Awaitable[Any]]


class TokenBucket:
    """One bucket: ``capacity`` tokens, refilled at ``capacity / period`` per second.
    Not locked itself; RateLimiter serialises access."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, period_seconds: float, now: float) -> None:
        if capacity <= 0 or period_seconds <= 0:
            raise ValueError(f"a token bucket needs capacity > 0 and period > 0, got "
                             f"{capacity!r} per {period_seconds!r}s")
        self.capacity = float(capacity)
        self.rate = self.capacity / period_seconds
        self.tokens = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens and return 0, or take nothing and return the seconds until
        ``cost`` tokens will be there."""
        self.refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        if cost > self.capacity:
            return float("inf")
        return (cost - self.tokens) / self.rate


class RateLimiter:
    """Token buckets by key, created on first use. ``clock`` is injectable for tests.

    The number of buckets is bounded: when full, buckets that have refilled completely are
    dropped (a full bucket is the same as a new one, so nothing is forgotten), and if none has,
    the stalest one goes."""

    def __init__(self, calls: int, period_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        if calls < 1 or period_seconds <= 0:
            raise ValueError(f"rate limit needs calls >= 1 and period_seconds > 0, got "
                             f"{calls!r} per {period_seconds!r}s")
        self.calls = calls
        self.period_seconds = period_seconds
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[Hashable, TokenBucket] = {}
        self._lock = threading.Lock()

    def acquire(self, key: Hashable, cost: float = 1.0, *, label: str | None = None) -> None:
        """Take one call's worth of tokens for ``key`` or raise RateLimitExceeded."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._evict(now)
                bucket = self._buckets[key] = TokenBucket(self.calls, self.period_seconds, now)
            wait = bucket.take(now, cost)
        if wait:
            raise RateLimitExceeded(label or str(key), wait)

    def _evict(self, now: float) -> None:
        full = []
        for k, b in self._buckets.items():
            b.refill(now)
            if b.tokens >= b.capacity:
                full.append(k)
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:
            stalest = min(self._buckets, key=lambda k: self._buckets[k].stamp)
            del self._buckets[stalest]

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimit:
    """Refuse calls over the rate, one bucket per (plugin, tenant): tenants do not share a
    budget, so one tenant cannot starve another."""

    def __init__(self, calls: int, period_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 key: Callable[[CallContext], Hashable] | None = None) -> None:
        self.limiter = RateLimiter(calls, period_seconds, clock=clock)
        self._key = key or (lambda ctx: (ctx.plugin, ctx.tenant))

    def _check(self, ctx: CallContext) -> None:
        key = self._key(ctx)
        label = f"plugin {ctx.plugin!r}" + (f" tenant {ctx.tenant!r}" if ctx.tenant else "")
        self.limiter.acquire(key, label=label)

    def call(self, ctx: CallContext, next: Next) -> Any:
        self._check(ctx)
        return next(ctx)

    async def acall(self, ctx: CallContext, next: AsyncNext) -> Any:
        self._check(ctx)
        return await next(ctx)


class Retry:
    """Retry a call whose worker crashed, for idempotent actions only: a crash may happen
    after the action had effects, and only the plugin knows which actions are safe to repeat.

    ``attempts`` counts the first try (1 means no retry); waits grow from ``backoff_seconds``
    by doubling. Only WorkerCrashed is retried: timeouts, memory and disk limits would just
    hit again, and a plugin's own exception is its answer."""

    def __init__(self, attempts: int = 1, backoff_seconds: float = 0.05,
                 idempotent_actions: Collection[str] = (), *,
                 sleep: Callable[[float], None] = time.sleep,
                 asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_backoff_seconds: float = 30.0) -> None:
        if attempts < 1:
            raise ValueError(f"retry attempts must be >= 1 (1 means no retry), got {attempts!r}")
        if backoff_seconds < 0:
            raise ValueError(f"retry backoff must be >= 0 seconds, got {backoff_seconds!r}")
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.idempotent_actions = frozenset(idempotent_actions)
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep
        self._asleep = asleep

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt``."""
        return min(self.backoff_seconds * (2 ** (attempt - 1)), self.max_backoff_seconds)

    def _tries(self, ctx: CallContext) -> int:
        return self.attempts if ctx.action in self.idempotent_actions else 1

    def call(self, ctx: CallContext, next: Next) -> Any:
        tries = self._tries(ctx)
        for attempt in range(1, tries + 1):
            ctx.attempt = attempt
            try:
                return next(ctx)
            except WorkerCrashed:
                if attempt == tries:
                    raise
            self._sleep(self.delay(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def acall(self, ctx: CallContext, next: AsyncNext) -> Any:
        tries = self._tries(ctx)
        for attempt in range(1, tries + 1):
            ctx.attempt = attempt
            try:
                return await next(ctx)
            except WorkerCrashed:
                if attempt == tries:
                    raise
            await self._asleep(self.delay(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")


# Which limit an error means, for warden_limits_hit_total.
LIMIT_OF_ERROR: tuple[tuple[type[BaseException], str], ...] = (
    (TimeoutExceeded, "timeout"),
    (MemoryLimitExceeded, "memory"),
    (DiskQuotaExceeded, "disk"),
    (PidsLimitExceeded, "pids"),
    (RateLimitExceeded, "rate"),
)


class Metrics:
    """Count calls, errors by type and limits hit, time every call, and keep the number of
    calls in flight."""

    def __init__(self, metrics: WardenMetrics, *,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.metrics = metrics
        self._clock = clock
        # The series of each (plugin, action) and plugin, made on first use: a call then
        # updates its counters without checking label names again.
        self._calls: dict[tuple[str, str], Any] = {}
        self._latency: dict[str, Any] = {}
        self._in_flight: dict[str, Any] = {}

    def _series(self, ctx: CallContext) -> Any:
        calls = self._calls.get((ctx.plugin, ctx.action))
        if calls is None:
            calls = self._calls[(ctx.plugin, ctx.action)] = self.metrics.calls.labels(
                plugin=ctx.plugin, action=ctx.action)
        latency = self._latency.get(ctx.plugin)
        if latency is None:
            latency = self._latency[ctx.plugin] = self.metrics.latency.labels(plugin=ctx.plugin)
            self._in_flight[ctx.plugin] = self.metrics.in_flight.labels(plugin=ctx.plugin)
        return calls, latency, self._in_flight[ctx.plugin]

    def _failed(self, ctx: CallContext, exc: BaseException) -> None:
        m = self.metrics
        m.errors.inc(plugin=ctx.plugin, type=type(exc).__name__)
        for cls, limit in LIMIT_OF_ERROR:
            if isinstance(exc, cls):
                m.limits_hit.inc(plugin=ctx.plugin, limit=limit)
                break

    def call(self, ctx: CallContext, next: Next) -> Any:
        calls, latency, in_flight = self._series(ctx)
        calls.inc()
        in_flight.inc()
        start = self._clock()
        try:
            return next(ctx)
        except Exception as exc:
            self._failed(ctx, exc)
            raise
        finally:
            latency.observe(self._clock() - start)
            in_flight.dec()

    async def acall(self, ctx: CallContext, next: AsyncNext) -> Any:
        calls, latency, in_flight = self._series(ctx)
        calls.inc()
        in_flight.inc()
        start = self._clock()
        try:
            return await next(ctx)
        except Exception as exc:
            self._failed(ctx, exc)
            raise
        finally:
            latency.observe(self._clock() - start)
            in_flight.dec()


class Pipeline:
    """Middlewares composed in order around a terminal call."""

    def __init__(self, middlewares: Sequence[Any] = ()) -> None:
        for m in middlewares:
            if not callable(getattr(m, "call", None)):
                raise TypeError(f"{m!r} is not a middleware: it has no call(ctx, next)")
        self.middlewares = tuple(middlewares)

    def __call__(self, ctx: CallContext, terminal: Next) -> Any:
        return self.call(ctx, terminal)

    def call(self, ctx: CallContext, terminal: Next) -> Any:
        """Run ``terminal(ctx)`` through every middleware."""
        return self.bind(terminal)(ctx)

    def bind(self, terminal: Next) -> Next:
        """The middlewares composed around ``terminal`` once, as one callable of a context:
        what a caller that always ends in the same terminal keeps, instead of composing the
        chain again for every call."""
        chain = terminal
        for m in reversed(self.middlewares):
            chain = _bind(m.call, chain)
        return chain

    async def acall(self, ctx: CallContext, terminal: AsyncNext) -> Any:
        """The async path: every middleware needs ``acall``."""
        chain = terminal
        for m in reversed(self.middlewares):
            acall = getattr(m, "acall", None)
            if acall is None:
                raise TypeError(f"middleware {m!r} has no acall(ctx, next) for async calls")
            chain = _bind(acall, chain)
        return await chain(ctx)


def _bind(fn: Callable[[CallContext, Any], Any], nxt: Any) -> Callable[[CallContext], Any]:
    return lambda ctx: fn(ctx, nxt)


def pipeline_for(manifest: Any, metrics: WardenMetrics | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> Pipeline:
    """The standard pipeline of a plugin from its manifest: metrics outermost (so refused and
    retried calls are counted and timed as the caller saw them), then the rate limit (a retry
    does not spend a second token), then retry of crashes."""
    layers: list[Any] = []
    if metrics is not None:
        layers.append(Metrics(metrics))
    rate = manifest.resources.rate_limit
    if rate is not None:
        layers.append(RateLimit(rate.calls, rate.period_seconds, clock=clock))
    retry = manifest.retry
    if retry.attempts > 1 and retry.idempotent_actions:
        layers.append(Retry(retry.attempts, retry.backoff_seconds, retry.idempotent_actions))
    return Pipeline(layers)
