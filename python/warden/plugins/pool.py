"""Pool: the warm workers of one plugin for one tenant.

A worker is handed to one caller at a time. Up to ``max_workers`` live at once; a caller
beyond that waits for one to come back, for at most its call's timeout, and then gets
TimeoutExceeded saying it waited for a worker. A worker is retired after
``max_calls_per_worker`` calls, after a call that broke it, or after ``idle_seconds`` unused
(down to ``min_workers``); idle workers are reaped whenever the pool is used and by ``reap()``.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from warden.calls.metrics import WardenMetrics
from warden.errors import CallFailed, TimeoutExceeded
from warden.plugins.manifest import PoolSettings
from warden.providers.base import Provider, SandboxHandle
from warden.spec.sandbox import SandboxSpec

__all__ = ["Pool"]


@dataclass(eq=False)
class _Worker:
    handle: SandboxHandle
    calls: int = 0
    last_used: float = field(default_factory=time.monotonic)
    egress: tuple[int, int] = (0, 0)  # the sandbox's egress bytes when last counted


class _Ticket:
    """A caller waiting for a worker. Waiting callers are served in arrival order: one is
    handed a ``worker``, or granted a ``start`` (reserved for it in ``Pool._starting``)."""

    __slots__ = ("start", "worker")

    def __init__(self) -> None:
        self.worker: _Worker | None = None
        self.start = False


class _Meters:
    """The series a pool records into, resolved once (the call path checks no labels)."""

    __slots__ = ("down", "restarts", "starts", "up", "wait")

    def __init__(self, metrics: WardenMetrics | None, plugin: str) -> None:
        if metrics is None:
            metrics = WardenMetrics()
        self.wait = metrics.worker_wait.labels(plugin=plugin)
        self.starts = metrics.worker_starts.labels(plugin=plugin, kind="start")
        self.restarts = metrics.worker_starts.labels(plugin=plugin, kind="restart")
        self.up = metrics.egress_bytes.labels(plugin=plugin, direction="up")
        self.down = metrics.egress_bytes.labels(plugin=plugin, direction="down")


class Pool:
    """Warm workers for one reuse key (plugin + tenant); see the module's docstring.

    ``metrics`` records how long callers wait for a worker (``warden_worker_wait_seconds``)
    and the workers started, as new capacity or in place of a retired one
    (``warden_worker_starts_total``), and for a spec with a NetworkPolicy the bytes its
    workers' egress relayed (``warden_egress_bytes_total``), under the label ``plugin``.
    """

    def __init__(self, provider: Provider, spec: SandboxSpec, settings: PoolSettings, *,
                 key: str, on_change: Callable[[], None] | None = None,
                 metrics: WardenMetrics | None = None, plugin: str = "") -> None:
        self.provider = provider
        self.spec = spec
        self.settings = settings
        self.key = key
        self._on_change = on_change
        self._meters = _Meters(metrics, plugin or key)
        self._networked = not isinstance(getattr(spec, "network", "none"), str)
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self._next_reap = 0.0
        # Callers waiting for a worker, first come first served: a caller that gives a
        # worker back and asks again at once must not take it ahead of them (each waits
        # within its call's timeout, so an unfair wait would end in a timeout).
        self._queue: collections.deque[_Ticket] = collections.deque()
        # Workers retired after a call broke them, they died or wore out, not yet replaced:
        # the next starts are restarts.
        self._owed = 0

    # -- counts --------------------------------------------------------------------------------

    @property
    def alive(self) -> int:
        with self._cond:
            return len(self._idle) + len(self._busy)

    def handles(self) -> list[SandboxHandle]:
        """The live workers' sandboxes (idle and busy)."""
        with self._cond:
            return [w.handle for w in (*self._idle, *self._busy)]

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    # -- life cycle ----------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        # No reuse_key: the provider would hand back the same live sandbox for every worker of
        # the pool. The pool is what reuses, by its own key.
        w = _Worker(self.provider.create(self.spec))
        with self._cond:
            restart = self._owed > 0
            if restart:
                self._owed -= 1
        (self._meters.restarts if restart else self._meters.starts).inc()
        return w

    def fill(self) -> None:
        """Start workers until ``min_workers`` are alive."""
        # Unlocked look first: this runs before every call, and a stale answer only means
        # the locked check below decides.
        if len(self._idle) + len(self._busy) >= self.settings.min_workers:
            return
        while True:
            with self._cond:
                if self._closed or (len(self._idle) + len(self._busy) + self._starting
                                    >= self.settings.min_workers):
                    return
                self._starting += 1
            try:
                w = self._spawn()
            finally:
                with self._cond:
                    self._starting -= 1
                    self._dispatch()
            with self._cond:
                closed = self._closed
                if not closed:
                    self._idle.append(w)
                    self._dispatch()
            if closed:
                self.provider.destroy(w.handle)
                return
            self._changed()

    def acquire(self, timeout: float | None = None) -> _Worker:
        """A worker for one caller; starts one when none is idle and the pool has room.
        With ``timeout``, waiting for a busy pool ends in TimeoutExceeded after that long."""
        start = time.monotonic()
        if start >= self._next_reap:
            self.reap()
        w = self._take(None if timeout is None else start + timeout, timeout)
        if w is None:
            try:
                w = self._spawn()
            except BaseException:
                with self._cond:
                    self._starting -= 1
                    self._dispatch()
                raise
            with self._cond:
                self._starting -= 1
                self._busy.add(w)
            self._changed()
        self._meters.wait.observe(time.monotonic() - start)
        return w

    def _take(self, deadline: float | None, timeout: float | None) -> _Worker | None:
        """An idle worker, or None with a start reserved (``_starting``) for the caller."""
        with self._cond:
            if self._closed:
                raise CallFailed(f"pool {self.key} is closed; load the plugin again")
            if not self._queue:                 # nobody has waited longer: take what is free
                w = self._pop_idle()
                if w is not None:
                    self._busy.add(w)
                    return w
                if self._has_room():
                    self._starting += 1
                    return None
            return self._wait_turn(deadline, timeout)

    def _wait_turn(self, deadline: float | None, timeout: float | None) -> _Worker | None:
        # Called with the lock held, after every caller queued before this one.
        ticket = _Ticket()
        self._queue.append(ticket)
        try:
            while ticket.worker is None and not ticket.start:
                if self._closed:
                    raise CallFailed(f"pool {self.key} is closed; load the plugin again")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutExceeded(
                        f"waited {timeout:g}s for a free worker of {self.key}, its call's "
                        f"timeout: all {self.settings.max_workers} workers (pool.max_workers) "
                        "were busy; raise pool.max_workers or resources.timeout_seconds, or "
                        "make fewer calls at once")
                self._cond.wait(left)
        finally:
            if ticket.worker is None and not ticket.start:
                self._queue.remove(ticket)
        return ticket.worker

    def _pop_idle(self) -> _Worker | None:
        # Called with the lock held.
        while self._idle:
            w = self._idle.pop()                # the most recently used: its caches are warm
            if self.provider.usable(w.handle):
                return w
            self._owed += 1
            self._retire_later(w)
        return None

    def _has_room(self) -> bool:
        return len(self._busy) + self._starting < self.settings.max_workers

    def _dispatch(self) -> None:
        """Hand what is free to the waiting callers, in arrival order (lock held)."""
        served = False
        while self._queue:
            w = self._pop_idle()
            if w is not None:
                self._busy.add(w)
                self._queue.popleft().worker = w
            elif self._has_room():
                self._starting += 1
                self._queue.popleft().start = True
            else:
                break
            served = True
        if served:
            self._cond.notify_all()

    def _retire_later(self, w: _Worker) -> None:
        # Called with the lock held: destroying waits on the provider, so do it in a thread.
        threading.Thread(target=self.provider.destroy, args=(w.handle,), daemon=True).start()

    def release(self, w: _Worker, *, broken: bool = False, counted: bool = True,
                retire: bool = False) -> None:
        """Give a worker back; a broken or worn-out one is destroyed (and replaced by the next
        start), as is one the caller asks to ``retire``. ``counted=False``: what it served was
        no call of the plugin's (it does not count towards ``max_calls_per_worker``)."""
        if counted:
            w.calls += 1
        w.last_used = time.monotonic()
        if self._networked:
            self._count_egress(w)
        worn = (broken or not self.provider.usable(w.handle)
                or w.calls >= self.settings.max_calls_per_worker)
        with self._cond:
            self._busy.discard(w)
            if not (worn or retire or self._closed):
                self._idle.append(w)
            elif worn and not self._closed:
                self._owed += 1
            if self._queue:
                self._dispatch()
        if worn or retire or self._closed:
            # Replaced by the next acquire (Plugin.pool refills to min_workers first), so a
            # failing spawn is reported to a caller that asked for a worker, not to this one.
            self.provider.destroy(w.handle)
            self._changed()

    def _count_egress(self, w: _Worker) -> None:
        up, down = self.provider.egress_bytes(w.handle)
        if (up, down) != w.egress:
            self._meters.up.inc(up - w.egress[0])
            self._meters.down.inc(down - w.egress[1])
            w.egress = (up, down)

    def _take_expired(self) -> list[_Worker]:
        limit = self.settings.idle_seconds
        now = time.monotonic()
        # Looking once per tenth of the idle time (at most once a second) is precise enough
        # and keeps the scan off the path of every call.
        self._next_reap = now + min(1.0, limit / 10)
        with self._cond:
            keep = len(self._idle) + len(self._busy) - self.settings.min_workers
            out = []
            for w in list(self._idle):
                if keep <= 0:
                    break
                if now - w.last_used >= limit:
                    self._idle.remove(w)
                    out.append(w)
                    keep -= 1
            return out

    def reap(self) -> int:
        """Destroy workers idle for longer than ``idle_seconds`` (keeping ``min_workers``)."""
        expired = self._take_expired()
        for w in expired:
            self.provider.destroy(w.handle)
        if expired:
            self._changed()
        return len(expired)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
            self._cond.notify_all()
        # Busy workers are destroyed too: their callers get WorkerCrashed, never a hang.
        for w in workers:
            self.provider.destroy(w.handle)
        self._changed()
