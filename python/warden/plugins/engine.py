"""Plugins: a directory with a plugin.yaml, scanned, served by a pool of warm sandboxed workers.

``Engine.load(path)`` copies the plugin's files into a snapshot (warden.plugins.bundle),
reads and validates its manifest, scans every ``.py`` file of it with the policy the manifest
allows, starts a :class:`Pool` of workers for the plugin and its tenant, and checks that the
entry point imported and defines ``handle``. Workers run the snapshot: what was scanned. A :class:`Plugin` call goes through the middleware (metrics, rate limit, retry of
crashes for idempotent actions) to one worker that serves no other caller meanwhile.

A worker whose call ended in a timeout, an OOM kill, a crash, a full disk or a broken channel
is destroyed, never handed out again: its sandbox is gone with everything in it, so a late
reply has nowhere to go. Workers are keyed by plugin and tenant; two tenants never share one.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from warden.wire import ipc
from warden.errors import CallFailed, PayloadTooLarge, PluginError
from warden.plugins import bundle
from warden.plugins.manifest import Manifest, PoolSettings
from warden.calls.metrics import WardenMetrics
from warden.calls.middleware import CallContext, pipeline_for
from warden.providers.base import Provider, SandboxHandle
from warden.providers.registry import get_provider
from warden.spec.sandbox import LABEL_KEYS, SandboxSpec

__all__ = ["DATA_INSIDE", "MOUNT_AT", "Engine", "Plugin", "Pool"]

MOUNT_AT = "/plugin"
DATA_INSIDE = MOUNT_AT + "/data"


# Errors after which a worker is not handed out again. A PluginError is the plugin's answer
# and PayloadTooLarge is refused before anything is sent: the worker is fine after both.
def _worker_survives(exc: BaseException) -> bool:
    return isinstance(exc, (PluginError, PayloadTooLarge))


@dataclass(eq=False)
class _Worker:
    handle: SandboxHandle
    calls: int = 0
    last_used: float = field(default_factory=time.monotonic)


class Pool:
    """Warm workers for one reuse key (plugin + tenant).

    A worker is handed to one caller at a time. Up to ``max_workers`` live at once; callers
    beyond that wait for one to come back. A worker is retired after ``max_calls_per_worker``
    calls, after a call that broke it, or after ``idle_seconds`` unused (down to
    ``min_workers``); idle workers are reaped whenever the pool is used and by ``reap()``.
    """

    def __init__(self, provider: Provider, spec: SandboxSpec, settings: PoolSettings, *,
                 key: str, on_change: Any = None) -> None:
        self.provider = provider
        self.spec = spec
        self.settings = settings
        self.key = key
        self._on_change = on_change
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self._next_reap = 0.0
        self._waiting = 0

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
        return _Worker(self.provider.create(self.spec))

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
                    self._cond.notify()
            with self._cond:
                if self._closed:
                    closed = True
                else:
                    closed = False
                    self._idle.append(w)
                    self._cond.notify()
            if closed:
                self.provider.destroy(w.handle)
                return
            self._changed()

    def acquire(self) -> _Worker:
        """A worker for one caller; starts one when none is idle and the pool has room."""
        if time.monotonic() >= self._next_reap:
            self.reap()
        with self._cond:
            while True:
                if self._closed:
                    raise CallFailed(f"pool {self.key} is closed; load the plugin again")
                while self._idle:
                    w = self._idle.pop()        # the most recently used: its caches are warm
                    if w.handle.state.get("dead"):
                        self._retire_later(w)
                        continue
                    self._busy.add(w)
                    return w
                if (len(self._busy) + self._starting) < self.settings.max_workers:
                    self._starting += 1
                    break
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1
        try:
            w = self._spawn()
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._starting -= 1
            self._busy.add(w)
        self._changed()
        return w

    def _retire_later(self, w: _Worker) -> None:
        # Called with the lock held: destroying waits on the provider, so do it in a thread.
        threading.Thread(target=self.provider.destroy, args=(w.handle,), daemon=True).start()

    def release(self, w: _Worker, *, broken: bool = False) -> None:
        """Give a worker back; a broken or worn-out one is destroyed."""
        w.calls += 1
        w.last_used = time.monotonic()
        retire = (broken or bool(w.handle.state.get("dead"))
                  or w.calls >= self.settings.max_calls_per_worker)
        with self._cond:
            self._busy.discard(w)
            if not retire and not self._closed:
                self._idle.append(w)
            if self._waiting:
                # Condition.notify is Python code; skipping it when nobody waits is measurable
                # on the warm path.
                self._cond.notify()
        if retire or self._closed:
            # Replaced by the next acquire (Plugin.pool refills to min_workers first), so a
            # failing spawn is reported to a caller that asked for a worker, not to this one.
            self.provider.destroy(w.handle)
            self._changed()

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


class Plugin:
    """A loaded plugin. Calls are thread-safe; ``tenant`` picks the pool (default: the tenant
    the plugin was loaded for)."""

    def __init__(self, engine: Engine, manifest: Manifest, snapshot: bundle.Snapshot, *,
                 tenant: str | None, labels: Mapping[str, str]) -> None:
        self.engine = engine
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self.root = snapshot.root
        # The SHA-256 of the files scanned at load: the workers run exactly those.
        self.digest = snapshot.digest
        self.tenant = tenant
        self.labels = dict(labels)
        self._snapshot: bundle.Snapshot | None = snapshot
        self._pools: dict[str | None, Pool] = {}
        self._lock = threading.Lock()
        # Rate limits are kept per (plugin, tenant): a tenant cannot spend another's budget.
        self._pipeline = pipeline_for(manifest, engine.metrics)
        self._chain = self._pipeline.bind(self._terminal)
        # The labels a call's context carries, per tenant; read-only, so one mapping serves
        # every call of that tenant.
        self._ctx_labels: dict[str | None, Mapping[str, str]] = {}

    def __repr__(self) -> str:
        return f"<Plugin {self.name} {self.version} at {self.root}>"

    # -- pools ---------------------------------------------------------------------------------

    def _spec(self, tenant: str | None) -> SandboxSpec:
        snapshot = self._snapshot
        if snapshot is None:
            raise CallFailed(f"plugin {self.name!r} is closed; load it again")
        labels = {"purpose": "plugin", **self.labels, "plugin": self.name}
        if tenant is not None:
            labels["tenant"] = tenant
        return SandboxSpec(
            limits=self.manifest.to_limits(), network=self.manifest.network, labels=labels,
            code_dir=snapshot.path, mount_at=MOUNT_AT, cwd=MOUNT_AT,
            writable=(DATA_INSIDE,), data_dir=DATA_INSIDE, env=self._env(),
            entry_point=f"{MOUNT_AT}/{self.manifest.entry_point}", image=self.manifest.image)

    def _env(self) -> dict[str, str]:
        # HOME is the one writable place a plugin has (the manifest may not set HOME).
        return {**self.manifest.env, "HOME": DATA_INSIDE}

    def pool(self, tenant: str | None = None, *, _default: bool = True) -> Pool:
        """The pool of ``tenant`` (the plugin's own tenant when None), started on first use."""
        if tenant is None and _default:
            tenant = self.tenant
        pool = self._pools.get(tenant)
        if pool is not None:
            pool.fill()
            return pool
        with self._lock:
            pool = self._pools.get(tenant)
            if pool is None:
                key = f"{self.name}@{self.version}:{self.root}|tenant={tenant or ''}"
                pool = Pool(self.engine.provider, self._spec(tenant), self.manifest.pool,
                            key=key, on_change=self._workers_changed)
                self._pools[tenant] = pool
        pool.fill()
        return pool

    def _workers_changed(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
        self.engine.metrics.workers_alive.set(sum(p.alive for p in pools), plugin=self.name)

    def workers(self, tenant: str | None = None) -> list[SandboxHandle]:
        """The live sandboxes serving ``tenant``."""
        return self.pool(tenant).handles()

    # -- calls ---------------------------------------------------------------------------------

    def _send(self, handle: SandboxHandle, op: str, action: str, field_name: str,
              value: object) -> object:
        provider = self.engine.provider
        args: dict[str, Any] = {"action": action, field_name: value}
        pid = handle.state.get("pid") if isinstance(handle.state, dict) else None
        if handle.provider == "native" and pid:
            # A plugin answers with a large result as {"$file": relpath} in its data/; the
            # host reads it beneath the worker's root without following symlinks.
            args["data_dir"] = f"/proc/{pid}/root{DATA_INSIDE}"
        try:
            return provider.call(handle, op, args)
        except PayloadTooLarge as exc:
            # Only our own request over the cap goes again as a memfd (refused before a byte
            # was written); a reply over the cap is the plugin's and is reported.
            if not str(exc).startswith("outgoing frame") or handle.provider != "native":
                raise
        ref, fd = ipc.memfd_ref(value)
        try:
            args[field_name] = ref
            args["fds"] = [fd]
            return provider.call(handle, op, args)
        finally:
            os.close(fd)

    def _terminal(self, ctx: CallContext) -> object:
        pool = self.pool(ctx.tenant, _default=False)
        w = pool.acquire()
        broken = True
        try:
            result = self._send(w.handle, ctx.op, ctx.action,
                                "items" if ctx.op == "batch" else "payload", ctx.payload)
            broken = False
            return result
        except BaseException as exc:
            broken = not _worker_survives(exc)
            raise
        finally:
            pool.release(w, broken=broken)

    def _ctx(self, action: str, tenant: str | None, op: str, payload: object,
             batch: int | None) -> CallContext:
        if not isinstance(action, str) or not action:
            raise ValueError(f"action must be a non-empty string, got {action!r}")
        tenant = self.tenant if tenant is None else tenant
        labels = self._ctx_labels.get(tenant)
        if labels is None:
            made = dict(self.labels)
            if tenant is not None:
                made["tenant"] = tenant
            labels = self._ctx_labels.setdefault(tenant, MappingProxyType(made))
        return CallContext(self.name, action, tenant, labels, batch, 1, op, payload)

    def call(self, action: str, payload: object = None, *, tenant: str | None = None) -> object:
        """``handle(action, payload)`` in a warm worker; returns its result."""
        return self._chain(self._ctx(action, tenant, "call", payload, None))

    def call_batch(self, action: str, items: list, *, tenant: str | None = None) -> list:
        """``handle_batch(action, items)`` (or ``handle`` per item) in one request."""
        if not isinstance(items, list):
            items = list(items)
        return self._chain(self._ctx(action, tenant, "batch", items, len(items)))

    async def acall(self, action: str, payload: object = None, *,
                    tenant: str | None = None) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.engine.executor, functools.partial(self.call, action, payload, tenant=tenant))

    async def acall_batch(self, action: str, items: list, *, tenant: str | None = None) -> list:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.engine.executor,
            functools.partial(self.call_batch, action, items, tenant=tenant))

    def reap(self) -> int:
        with self._lock:
            pools = list(self._pools.values())
        return sum(p.reap() for p in pools)

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
            snapshot, self._snapshot = self._snapshot, None
        for p in pools:
            p.close()
        self.engine.metrics.workers_alive.set(0, plugin=self.name)
        if snapshot is not None:
            bundle.give_back(snapshot)


class Engine:
    """Loads plugins and runs their calls in sandboxes of one provider.

    ``Engine(provider="native")``; ``engine.load(path, tenant=..., labels=...)``;
    ``engine.metrics_text()`` in the Prometheus text format; ``engine.close()`` destroys every
    worker. Usable as a context manager.
    """

    def __init__(self, provider: str | Provider = "native", *, max_threads: int = 32) -> None:
        self.provider = get_provider(provider) if isinstance(provider, str) else provider
        self.metrics = WardenMetrics()
        self._plugins: list[Plugin] = []
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._max_threads = max_threads
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The threads async calls run their blocking part on."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._max_threads,
                                                    thread_name_prefix="warden-call")
            return self._executor

    def load(self, path: str | os.PathLike, *, tenant: str | None = None,
             labels: Mapping[str, str] | None = None) -> Plugin:
        """Read, validate and scan the plugin at ``path`` and start its warm workers."""
        root = os.path.realpath(os.fspath(path))
        labels = dict(labels or {})
        for k, v in labels.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"labels must map str to str, got {k!r}: {v!r}")
        if tenant is not None and not isinstance(tenant, str):
            raise TypeError(f"tenant must be a string, got {tenant!r}")
        unknown = sorted(set(labels) - set(LABEL_KEYS) - {"plugin"})
        if unknown:
            raise ValueError(f"unknown labels {unknown}; labels are {', '.join(LABEL_KEYS)}")
        if tenant is None:
            tenant = labels.get("tenant")
        labels.pop("tenant", None)
        # Everything from here on reads warden's copy of the plugin: what is scanned is
        # what the workers run.
        snapshot = bundle.take(root)
        try:
            manifest = bundle.manifest_of(snapshot)
            bundle.check_entry(snapshot, manifest)
            bundle.scan(snapshot, manifest)
        except BaseException:
            bundle.give_back(snapshot)
            raise
        plugin = Plugin(self, manifest, snapshot, tenant=tenant, labels=labels)
        try:
            plugin.pool()
        except BaseException:
            plugin.close()
            raise
        with self._lock:
            self._plugins.append(plugin)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap_loop, daemon=True,
                                                name="warden-reaper")
                self._reaper.start()
        return plugin

    def _reap_loop(self) -> None:
        # Idle workers are also reaped when their pool is used; this covers pools nobody
        # calls any more, whose sandboxes would otherwise hold memory until close().
        while not self._stop.wait(1.0):
            self.reap()

    @property
    def plugins(self) -> list[Plugin]:
        with self._lock:
            return list(self._plugins)

    def metrics_text(self) -> str:
        return self.metrics.render()

    def reap(self) -> int:
        """Destroy workers idle past their plugin's ``idle_seconds``; returns how many."""
        return sum(p.reap() for p in self.plugins)

    def close(self) -> None:
        with self._lock:
            plugins = list(self._plugins)
            self._plugins.clear()
            executor, self._executor = self._executor, None
            reaper, self._reaper = self._reaper, None
        self._stop.set()
        if reaper is not None:
            reaper.join()
        for p in plugins:
            p.close()
        if executor is not None:
            executor.shutdown(wait=False)

    def __enter__(self) -> Engine:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
