"""The service's Prometheus metrics, in a registry of each app's own. Labels are route
templates, methods, statuses, tenant names and quota names: never a path as sent, a sandbox
id or anything of a key."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServiceMetrics"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("warden_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("warden_http_request_seconds", "time to answer a request "
                                 "(to its first byte for streamed bodies)", ["route"],
                                 buckets=_BUCKETS, registry=r)
        self.sandboxes = Gauge("warden_sandboxes", "live sandboxes", ["tenant", "state"],
                               registry=r)
        self.quota_refusals = Counter("warden_quota_refusals", "requests refused over a quota",
                                      ["tenant", "quota"], registry=r)
        self.auth_refusals = Counter("warden_auth_refusals", "requests refused for their key",
                                     ["status"], registry=r)
        self.create_seconds = Histogram("warden_sandbox_create_seconds", "time to make a "
                                        "sandbox, by start path", ["path"], buckets=_BUCKETS,
                                        registry=r)

    def set_live(self, tenant: str, count: int) -> None:
        self.sandboxes.labels(tenant=tenant, state="running").set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
