"""The live sandboxes of the server, each its tenant's, and the quotas that bound them.

A sandbox is found by (tenant, id): another tenant's id is as missing as one never made. Ids
are the service's own random ones, not the provider's, so they say nothing about how many
sandboxes exist. A create reserves its share of the tenant's quotas before the sandbox is made
and gives it back if making it fails, so two concurrent creates cannot both pass the last slot.
Sandboxes live in this process: they end with it (close_all at shutdown, and the kernel kills
what is left if the process dies).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from warden.sandboxes.sandbox import Sandbox
from warden.service.config import Config, Quotas
from warden.service.problems import NotFound, QuotaExceeded
from warden.spec.limits import Limits

__all__ = ["Live", "Registry", "check_limits"]

log = logging.getLogger("warden")


@dataclass
class Live:
    """One live sandbox: who owns it and what it was made with."""

    id: str
    tenant: str
    sandbox: Sandbox
    created: float
    limits: Limits
    labels: dict[str, str]
    readonly: bool
    closing: bool = field(default=False)


def check_limits(limits: Limits, quotas: Quotas) -> None:
    """QuotaExceeded naming the first limit over the largest the tenant may ask for."""
    for name, asked, most in (("max_memory_mb", limits.memory_mb, quotas.max_memory_mb),
                              ("max_disk_mb", limits.disk_mb, quotas.max_disk_mb),
                              ("max_pids", limits.pids, quotas.max_pids),
                              ("max_cpus", limits.cpus, quotas.max_cpus),
                              ("max_wall_time_s", limits.wall_time_s, quotas.max_wall_time_s)):
        if asked > most:
            raise QuotaExceeded(name, most, asked)


class _Bucket:
    """A token bucket: ``rate`` tokens a second, as many at most."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = max(rate, 1.0)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        now = time.monotonic()
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Registry:
    """Every live sandbox by id, under one lock; quotas from ``config``."""

    def __init__(self, config: Config, on_change: Callable[[str, int], None] | None = None):
        self.config = config
        self._live: dict[str, Live] = {}
        self._reserved: dict[str, tuple[int, int]] = {}  # tenant -> (sandboxes, memory_mb)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._on_change = on_change or (lambda tenant, count: None)

    def admit(self, tenant: str) -> None:
        """Take one request of the tenant's requests_per_s, or QuotaExceeded."""
        rate = self.config.quotas(tenant).requests_per_s
        with self._lock:
            bucket = self._buckets.setdefault(tenant, _Bucket(rate))
            wait = bucket.take()
        if wait:
            raise QuotaExceeded("requests_per_s", rate, 1, retry_after=wait)

    def _usage(self, tenant: str) -> tuple[int, int]:
        count, memory = self._reserved.get(tenant, (0, 0))
        for live in self._live.values():
            if live.tenant == tenant:
                count, memory = count + 1, memory + live.limits.memory_mb
        return count, memory

    def reserve(self, tenant: str, limits: Limits) -> None:
        """Count a sandbox about to be made against the tenant's quotas, or QuotaExceeded."""
        quotas = self.config.quotas(tenant)
        check_limits(limits, quotas)
        with self._lock:
            count, memory = self._usage(tenant)
            if count + 1 > quotas.sandboxes:
                raise QuotaExceeded("sandboxes", quotas.sandboxes, 1, used=count)
            if memory + limits.memory_mb > quotas.memory_mb:
                raise QuotaExceeded("memory_mb", quotas.memory_mb, limits.memory_mb,
                                    used=memory)
            n, m = self._reserved.get(tenant, (0, 0))
            self._reserved[tenant] = (n + 1, m + limits.memory_mb)

    def release(self, tenant: str, limits: Limits) -> None:
        with self._lock:
            n, m = self._reserved[tenant]
            self._reserved[tenant] = (n - 1, m - limits.memory_mb)

    def add(self, tenant: str, sandbox: Sandbox, labels: dict[str, str],
            readonly: bool) -> Live:
        """Register a sandbox made after reserve(): its reservation becomes the sandbox."""
        live = Live("sb_" + secrets.token_hex(8), tenant, sandbox, time.time(),
                    sandbox.spec.limits, labels, readonly)
        with self._lock:
            n, m = self._reserved[tenant]
            self._reserved[tenant] = (n - 1, m - live.limits.memory_mb)
            self._live[live.id] = live
            count = sum(1 for x in self._live.values() if x.tenant == tenant)
        self._on_change(tenant, count)
        return live

    def get(self, tenant: str, sandbox_id: str) -> Live:
        with self._lock:
            live = self._live.get(sandbox_id)
        if live is None or live.tenant != tenant or live.closing:
            raise NotFound()
        return live

    def list(self, tenant: str, labels: dict[str, str]) -> list[Live]:
        with self._lock:
            mine = [x for x in self._live.values() if x.tenant == tenant and not x.closing]
        return [x for x in mine if all(x.labels.get(k) == v for k, v in labels.items())]

    def take(self, tenant: str, sandbox_id: str) -> Live:
        """Mark a sandbox as closing (no request finds it from now on) and return it."""
        with self._lock:
            live = self._live.get(sandbox_id)
            if live is None or live.tenant != tenant or live.closing:
                raise NotFound()
            live.closing = True
        return live

    def forget(self, live: Live) -> None:
        with self._lock:
            self._live.pop(live.id, None)
            count = sum(1 for x in self._live.values() if x.tenant == live.tenant)
        self._on_change(live.tenant, count)

    def close(self, live: Live) -> None:
        try:
            live.sandbox.close()
        finally:
            self.forget(live)

    def close_all(self) -> int:
        """Close every sandbox (at shutdown); how many there were."""
        with self._lock:
            every = list(self._live.values())
            for live in every:
                live.closing = True
        for live in every:
            try:
                self.close(live)
            except Exception:
                log.exception("closing sandbox %s of tenant %s at shutdown", live.id,
                              live.tenant)
        return len(every)
