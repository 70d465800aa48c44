"""Plugins: a directory with a plugin.yaml, scanned, served by a pool of warm sandboxed workers.

``Engine.load(path)`` copies the plugin's files into a snapshot (warden.plugins.bundle),
reads and validates its manifest, scans every ``.py`` file of it with the policy the manifest
allows, starts a :class:`Pool` of workers for the plugin and its tenant, and checks that the
entry point imported and defines ``handle``. Workers run the snapshot: what was scanned. A :class:`Plugin` call goes through the middleware (metrics, rate limit, retry of
crashes for idempotent actions) to one worker that serves no other caller meanwhile.

A worker whose call ended in a timeout, an OOM kill, a crash, a full disk or a broken channel
is destroyed, never handed out again: its sandbox is gone with everything in it, so a late
reply has nowhere to go. Workers are keyed by plugin and tenant; two tenants never share one.
An async call runs its blocking part on the engine's threads, which all plugins and tenants
share; each (plugin, tenant) holds at most its pool's ``max_workers`` of them, and its other
async callers wait in their event loop (warden.plugins.gate), so no tenant's backlog starves
another's calls.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from warden.calls.metrics import WardenMetrics
from warden.calls.middleware import CallContext, pipeline_for
from warden.errors import (
    CallFailed,
    InvalidArgument,
    PayloadTooLarge,
    PluginError,
    TimeoutExceeded,
)
from warden.plugins import bundle, ceilings
from warden.plugins.ceilings import Ceilings
from warden.plugins.gate import Gate
from warden.plugins.manifest import MANIFEST_NAME, Manifest
from warden.plugins.pool import Pool
from warden.providers.base import Provider, SandboxHandle
from warden.providers.registry import get_provider
from warden.sandboxes import checks
from warden.spec.sandbox import SandboxSpec
from warden.wire import ops

if TYPE_CHECKING:
    from warden.scan import Policy

__all__ = ["DATA_INSIDE", "MOUNT_AT", "Engine", "Plugin"]

MOUNT_AT = "/plugin"
DATA_INSIDE = MOUNT_AT + "/data"


# Errors after which a worker is not handed out again. A PluginError is the plugin's answer
# and PayloadTooLarge is refused before anything is sent: the worker is fine after both.
def _worker_survives(exc: BaseException) -> bool:
    return isinstance(exc, (PluginError, PayloadTooLarge))


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
        # Per tenant, the async callers' share of the engine's threads (see gate.py).
        self._gates: dict[str | None, Gate] = {}

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
                            key=key, on_change=self._workers_changed,
                            metrics=self.engine.metrics, plugin=self.name)
                self._pools[tenant] = pool
        pool.fill()
        return pool

    def check_entry(self) -> None:
        """Raise the plugin's own error (PluginError with its import traceback, or one naming
        the missing handle) unless its entry point loaded in a worker."""
        pool = self.pool()
        w = pool.acquire()
        broken = True
        try:
            self.engine.provider.call(w.handle, ops.ENTRY, {})
            broken = False
        except PluginError as exc:
            raise PluginError(exc.type, f"plugin {self.name!r} at {self.root} did not load: "
                              f"{exc.message}", exc.traceback) from None
        finally:
            # A pool that keeps no worker warm keeps none for this check either.
            pool.release(w, broken=broken, counted=False,
                         retire=pool.settings.min_workers == 0)

    def _workers_changed(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
        self.engine.metrics.workers_alive.set(sum(p.alive for p in pools), plugin=self.name)

    def workers(self, tenant: str | None = None) -> list[SandboxHandle]:
        """The live sandboxes serving ``tenant``."""
        return self.pool(tenant).handles()

    # -- calls ---------------------------------------------------------------------------------

    def _send(self, handle: SandboxHandle, op: str, action: str, field_name: str,
              value: object, timeout: float | None = None) -> object:
        # A plugin may answer with a large result as {"$file": relpath} in its data/ (the
        # spec's data_dir): the provider reads it from there by itself. A payload too large
        # for a frame is the provider's to carry (the native one sends it as a memfd).
        args: dict[str, Any] = {"action": action, field_name: value}
        return self.engine.provider.call(handle, op, args, timeout=timeout)

    def _terminal(self, ctx: CallContext) -> object:
        pool = self.pool(ctx.tenant, _default=False)
        # The wait for a worker counts against the call's timeout: the caller waits for
        # timeout_seconds in all, never more.
        timeout = self.manifest.resources.timeout_seconds
        start = time.monotonic()
        w = pool.acquire(timeout)
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            pool.release(w, counted=False)
            raise TimeoutExceeded(
                f"call {ctx.action!r} of plugin {self.name!r} spent its {timeout:g}s timeout "
                "waiting for a worker to start; nothing was sent to it (raise "
                "resources.timeout_seconds, or pool.min_workers to keep workers warm)")
        broken = True
        try:
            result = self._send(w.handle, ctx.op, ctx.action,
                                "items" if ctx.op == ops.BATCH else "payload", ctx.payload, left)
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
            raise InvalidArgument("action", action, "a non-empty string naming an action of "
                                  f"plugin {self.name!r}")
        if tenant is not None and not isinstance(tenant, str):
            raise InvalidArgument("tenant", tenant, "None or a string")
        tenant = self.tenant if tenant is None else tenant
        labels = self._ctx_labels.get(tenant)
        if labels is None:
            made = dict(self.labels)
            if tenant is not None:
                made["tenant"] = tenant
            labels = self._ctx_labels.setdefault(tenant, MappingProxyType(made))
        return CallContext(self.name, action, tenant, labels, batch, 1, op, payload)

    def call(self, action: str, payload: object = None, *, tenant: str | None = None) -> object:
        """``handle(action, payload)`` in a warm worker; returns its result. A payload msgpack
        cannot carry is an InvalidArgument, raised before any worker is asked. On the native
        provider a payload over the frame cap reaches ``handle`` as a read-only memoryview
        (the host's sealed memfd, mapped) and a large result comes back beside the reply."""
        return self._chain(self._ctx(action, tenant, ops.CALL, checks.payload(payload), None))

    def call_batch(self, action: str, items: list, *, tenant: str | None = None) -> list:
        """``handle_batch(action, items)`` (or ``handle`` per item) in one request."""
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise InvalidArgument("items", items, "a list of payloads, one per call")
        if not isinstance(items, list):
            items = list(items)
        checks.payload(items, "items")
        return self._chain(self._ctx(action, tenant, ops.BATCH, items, len(items)))

    async def acall(self, action: str, payload: object = None, *,
                    tenant: str | None = None) -> object:
        """``call`` for asyncio. Beyond ``pool.max_workers`` calls of one tenant at once, the
        rest wait in the event loop, holding none of the engine's threads."""
        return await self._threaded(
            tenant, functools.partial(self.call, action, payload, tenant=tenant))

    async def acall_batch(self, action: str, items: list, *, tenant: str | None = None) -> list:
        """``call_batch`` for asyncio, waiting as ``acall`` does."""
        return await self._threaded(
            tenant, functools.partial(self.call_batch, action, items, tenant=tenant))

    def _gate(self, tenant: str | None) -> Gate:
        if tenant is not None and not isinstance(tenant, str):
            raise InvalidArgument("tenant", tenant, "None or a string")
        key = self.tenant if tenant is None else tenant
        gate = self._gates.get(key)
        if gate is None:
            with self._lock:
                gate = self._gates.setdefault(key, Gate(self.manifest.pool.max_workers))
        return gate

    async def _threaded(self, tenant: str | None, blocking: Any) -> Any:
        gate = self._gate(tenant)
        await gate.acquire()
        try:
            done = self.engine.executor.submit(blocking)
        except BaseException:
            gate.release()
            raise
        # The slot is the thread's, not the awaiting task's: it comes back when the call ends,
        # even when the task was cancelled while the call ran.
        done.add_done_callback(lambda _: gate.release())
        return await asyncio.wrap_future(done)

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


def _policy_arg(policy: object) -> Policy | None:
    from warden.scan import Policy

    if policy is not None and not isinstance(policy, Policy):
        raise InvalidArgument("policy", policy, "a warden.Policy (the scanner policy every "
                              "plugin of the engine starts from), or None")
    return policy


class Engine:
    """Loads plugins and runs their calls in sandboxes of one provider.

    ``Engine(provider="native", max_limits=None, policy=None, relaxable=None)``;
    ``engine.load(path, tenant=..., labels=...)``; ``engine.metrics_text()`` in the Prometheus
    text format; ``engine.close()`` destroys every worker. Usable as a context manager.
    ``max_limits``, ``policy`` and ``relaxable`` bound what a manifest may ask for (see
    warden.plugins.ceilings): a manifest over them is refused at load.
    """

    def __init__(self, provider: str | Provider = "native", *, max_threads: int = 32,
                 max_limits: Ceilings | Mapping[str, object] | None = None,
                 policy: Policy | None = None,
                 relaxable: Mapping[str, object] | None = None) -> None:
        # The operator's bounds on every manifest loaded here (warden.plugins.ceilings).
        self.max_limits = Ceilings.of(max_limits)
        self.policy = _policy_arg(policy)
        self.relaxable = ceilings.relaxable_map(relaxable)
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
        """The threads async calls run their blocking part on (each plugin and tenant holds
        at most its pool's max_workers of them at once)."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._max_threads,
                                                    thread_name_prefix="warden-call")
            return self._executor

    def load(self, path: str | os.PathLike, *, tenant: str | None = None,
             labels: Mapping[str, str] | None = None) -> Plugin:
        """Copy, read, validate and scan the plugin at ``path``, start its warm workers and
        check that its entry point loads (else the plugin's own PluginError)."""
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidArgument("path", path, "the plugin's directory, a str or os.PathLike")
        labels = checks.labels_map(labels, extra=("plugin",))
        if tenant is not None and not isinstance(tenant, str):
            raise InvalidArgument("tenant", tenant, "None or a string")
        root = os.path.realpath(os.fspath(path))
        if tenant is None:
            tenant = labels.get("tenant")
        labels.pop("tenant", None)
        # Everything from here on reads warden's copy of the plugin: what is scanned is
        # what the workers run.
        snapshot = bundle.take(root, self.provider.area_dir())
        try:
            manifest = bundle.manifest_of(snapshot)
            policy = ceilings.check(manifest, self.max_limits, policy=self.policy,
                                    relaxable=self.relaxable,
                                    source=os.path.join(root, MANIFEST_NAME))
            bundle.scan(snapshot, manifest, policy)
            bundle.check_entry(snapshot, manifest)
            plugin = Plugin(self, manifest, snapshot, tenant=tenant, labels=labels)
        except BaseException:
            bundle.give_back(snapshot)
            raise
        try:
            plugin.check_entry()
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

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
