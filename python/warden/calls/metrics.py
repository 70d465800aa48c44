"""Counters, gauges and histograms, rendered in the Prometheus text exposition format.

A small, dependency-free registry: warden must not pull prometheus_client into every host.
All updates take one lock per registry, so any thread may record while another renders.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Iterable, Sequence

__all__ = [
    "DEFAULT_BUCKETS",
    "Counter",
    "CounterSeries",
    "Gauge",
    "GaugeSeries",
    "Histogram",
    "HistogramSeries",
    "Registry",
    "WardenMetrics",
]

# Prometheus' default buckets, extended downwards: a warm warden call takes tens of
# microseconds, and the defaults start at 5 ms.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, registry: Registry, name: str, help: str,
                 labelnames: Sequence[str]) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"metric name {name!r} is not a valid Prometheus name "
                             "([a-zA-Z_:][a-zA-Z0-9_:]*)")
        for label in labelnames:
            if not _LABEL_RE.match(label) or label.startswith("__") or label == "le":
                raise ValueError(f"label name {label!r} of metric {name} is not allowed")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = registry._lock

    def _key(self, labels: dict[str, object]) -> tuple[str, ...]:
        if not labels and not self.labelnames:
            return ()  # the common unlabelled update: no sets built on the call path
        if len(labels) != len(self.labelnames) or set(labels) != set(self.labelnames):
            raise ValueError(f"metric {self.name} takes labels {self.labelnames}, "
                             f"got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def _labelstr(self, key: tuple[str, ...], extra: str = "") -> str:
        parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(self.labelnames, key)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class _Scalar(_Metric):
    """One number per label set: what counters and gauges share."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._values: dict[tuple[str, ...], float] = {}

    def _add(self, amount: float, labels: dict[str, object]) -> None:
        self._add_key(amount, self._key(labels))

    def _add_key(self, amount: float, key: tuple[str, ...]) -> None:
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        lines = self._header()
        for key, v in sorted(self._values.items()):
            lines.append(f"{self.name}{self._labelstr(key)} {_fmt(v)}")
        return lines


class Counter(_Scalar):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0 or math.isnan(amount):
            raise ValueError(f"counter {self.name} can only go up, got {amount!r}")
        self._add(amount, labels)

    def labels(self, **labels: object) -> CounterSeries:
        """The series of one label set, checked once: ``inc()`` on it costs no label checks
        (what the call path uses)."""
        return CounterSeries(self, self._key(labels))


class CounterSeries:
    """One label set of a Counter."""

    __slots__ = ("_counter", "_key")

    def __init__(self, counter: Counter, key: tuple[str, ...]) -> None:
        self._counter = counter
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0 or math.isnan(amount):
            raise ValueError(f"counter {self._counter.name} can only go up, got {amount!r}")
        self._counter._add_key(amount, self._key)


class Gauge(_Scalar):
    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, **labels: object) -> None:
        self.inc(-amount, **labels)

    def labels(self, **labels: object) -> GaugeSeries:
        """The series of one label set, checked once (see Counter.labels)."""
        return GaugeSeries(self, self._key(labels))


class GaugeSeries:
    """One label set of a Gauge."""

    __slots__ = ("_gauge", "_key")

    def __init__(self, gauge: Gauge, key: tuple[str, ...]) -> None:
        self._gauge = gauge
        self._key = key

    def inc(self) -> None:
        self._gauge._add_key(1.0, self._key)

    def dec(self) -> None:
        self._gauge._add_key(-1.0, self._key)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, registry: Registry, name: str, help: str,
                 labelnames: Sequence[str], buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(registry, name, help, labelnames)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {name} needs distinct finite buckets, got {buckets!r}")
        self.buckets = tuple(bounds)
        # Per label set: [count in each bucket (not cumulative) + overflow, sum, count].
        self._data: dict[tuple[str, ...], list] = {}

    def observe(self, value: float, **labels: object) -> None:
        self._observe_key(value, self._key(labels))

    def labels(self, **labels: object) -> HistogramSeries:
        """The series of one label set, checked once (see Counter.labels)."""
        return HistogramSeries(self, self._key(labels))

    def _observe_key(self, value: float, key: tuple[str, ...]) -> None:
        # The first bucket whose upper bound is >= value: Prometheus' "le" semantics.
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            d = self._data.get(key)
            if d is None:
                d = self._data[key] = [[0] * (len(self.buckets) + 1), 0.0, 0]
            d[0][i] += 1
            d[1] += value
            d[2] += 1

    def count(self, **labels: object) -> int:
        with self._lock:
            d = self._data.get(self._key(labels))
            return d[2] if d else 0

    def render(self) -> list[str]:
        lines = self._header()
        for key, (counts, total, n) in sorted(self._data.items()):
            cumulative = 0
            for bound, c in zip(self.buckets, counts):
                cumulative += c
                le = 'le="' + _fmt(bound) + '"'
                lines.append(f"{self.name}_bucket{self._labelstr(key, le)} {cumulative}")
            inf = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{self._labelstr(key, inf)} {n}")
            lines.append(f"{self.name}_sum{self._labelstr(key)} {_fmt(total)}")
            lines.append(f"{self.name}_count{self._labelstr(key)} {n}")
        return lines


class HistogramSeries:
    """One label set of a Histogram."""

    __slots__ = ("_histogram", "_key")

    def __init__(self, histogram: Histogram, key: tuple[str, ...]) -> None:
        self._histogram = histogram
        self._key = key

    def observe(self, value: float) -> None:
        self._histogram._observe_key(value, self._key)


class Registry:
    """A set of metrics rendered together. ``counter``/``gauge``/``histogram`` return the
    existing metric when one of that name, kind and labels is already registered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}

    def _get(self, cls: type, name: str, help: str, labelnames: Sequence[str],
             **kw: object) -> _Metric:
        with self._lock:
            existing = self._metrics.get(name)
            if existing is not None:
                if type(existing) is not cls or existing.labelnames != tuple(labelnames):
                    raise ValueError(f"metric {name} is already registered as a "
                                     f"{existing.kind} with labels {existing.labelnames}")
                return existing
        metric = cls(self, name, help, labelnames, **kw)
        with self._lock:
            return self._metrics.setdefault(name, metric)

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._get(Counter, name, help, labelnames)  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._get(Gauge, name, help, labelnames)  # type: ignore[return-value]

    def histogram(self, name: str, help: str, labelnames: Sequence[str] = (),
                  buckets: Iterable[float] = DEFAULT_BUCKETS) -> Histogram:
        return self._get(Histogram, name, help, labelnames,  # type: ignore[return-value]
                         buckets=tuple(buckets))

    def render(self) -> str:
        """The whole registry in the Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            lines: list[str] = []
            for name in sorted(self._metrics):
                lines.extend(self._metrics[name].render())
        return "\n".join(lines) + "\n" if lines else ""


class WardenMetrics:
    """The metrics an Engine exposes, with the names it exposes them under."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        r = self.registry
        self.calls = r.counter("warden_calls_total", "Calls made into plugins.",
                               ("plugin", "action"))
        self.errors = r.counter("warden_call_errors_total",
                                "Calls that failed, by error type.", ("plugin", "type"))
        self.latency = r.histogram("warden_call_duration_seconds",
                                   "Wall time of a call, as seen by the caller.", ("plugin",))
        self.workers_alive = r.gauge("warden_workers_alive", "Warm workers alive.", ("plugin",))
        self.in_flight = r.gauge("warden_calls_in_flight",
                                 "Calls made and not yet answered, waiting ones included.",
                                 ("plugin",))
        self.worker_wait = r.histogram(
            "warden_worker_wait_seconds",
            "Time a call waited for a worker: for one to come free while all were busy, or "
            "for a new one to start.", ("plugin",))
        self.worker_starts = r.counter(
            "warden_worker_starts_total",
            "Workers started: kind=start for new capacity, kind=restart in place of a worker "
            "retired after a call broke it, it died or it reached max_calls_per_worker.",
            ("plugin", "kind"))
        self.limits_hit = r.counter("warden_limits_hit_total",
                                    "Calls stopped by a limit, by limit.", ("plugin", "limit"))
        self.egress_bytes = r.counter(
            "warden_egress_bytes_total",
            "Bytes warden's egress relayed for the plugin's sandboxes, to the world (up) and "
            "from it (down).", ("plugin", "direction"))

    def render(self) -> str:
        return self.registry.render()
