"""The metrics registry and its Prometheus text rendering."""

from __future__ import annotations

import re
import threading

import pytest
from warden.calls.metrics import DEFAULT_BUCKETS, Registry, WardenMetrics

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})?'
                    r" (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$")


def parse(text: str) -> dict[str, float]:
    """Samples of an exposition, checking every line is a comment or a valid sample."""
    out = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        assert SAMPLE.match(line), line
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def test_counter_gauge_and_rendering():
    r = Registry()
    c = r.counter("x_total", "Things.", ("kind",))
    c.inc(kind="a")
    c.inc(2, kind="a")
    c.inc(kind='quo"te\\new\nline')
    g = r.gauge("alive", "Alive now.")
    g.set(3)
    g.dec()
    text = r.render()
    assert "# TYPE x_total counter" in text and "# TYPE alive gauge" in text
    samples = parse(text)
    assert samples['x_total{kind="a"}'] == 3
    assert samples['x_total{kind="quo\\"te\\\\new\\nline"}'] == 1
    assert samples["alive"] == 2
    with pytest.raises(ValueError):
        c.inc(-1, kind="a")
    with pytest.raises(ValueError):
        c.inc(other="a")


def test_histogram_buckets_are_cumulative_with_le_semantics():
    r = Registry()
    h = r.histogram("lat_seconds", "Latency.", ("plugin",), buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 5.0):
        h.observe(v, plugin="t")
    s = parse(r.render())
    assert s['lat_seconds_bucket{plugin="t",le="0.1"}'] == 2  # 0.1 <= 0.1 counts
    assert s['lat_seconds_bucket{plugin="t",le="1"}'] == 3
    assert s['lat_seconds_bucket{plugin="t",le="+Inf"}'] == 4
    assert s['lat_seconds_count{plugin="t"}'] == 4
    assert s['lat_seconds_sum{plugin="t"}'] == pytest.approx(5.65)


def test_registry_returns_the_same_metric_and_refuses_conflicts():
    r = Registry()
    assert r.counter("a_total", "A.", ("x",)) is r.counter("a_total", "A.", ("x",))
    with pytest.raises(ValueError):
        r.gauge("a_total", "A.", ("x",))
    with pytest.raises(ValueError):
        r.counter("a_total", "A.", ("y",))
    with pytest.raises(ValueError):
        r.counter("bad name", "B.")
    with pytest.raises(ValueError):
        r.histogram("h", "H.", ("le",))


def test_warden_metrics_names():
    m = WardenMetrics()
    m.calls.inc(plugin="t", action="a")
    m.errors.inc(plugin="t", type="TimeoutExceeded")
    m.latency.observe(0.00003, plugin="t")
    m.workers_alive.set(2, plugin="t")
    m.limits_hit.inc(plugin="t", limit="timeout")
    s = parse(m.render())
    assert s['warden_calls_total{plugin="t",action="a"}'] == 1
    assert s['warden_call_errors_total{plugin="t",type="TimeoutExceeded"}'] == 1
    assert s['warden_workers_alive{plugin="t"}'] == 2
    assert s['warden_limits_hit_total{plugin="t",limit="timeout"}'] == 1
    assert s['warden_call_duration_seconds_bucket{plugin="t",le="5e-05"}'] == 1
    assert len([k for k in s if k.startswith("warden_call_duration_seconds_bucket")]) == \
        len(DEFAULT_BUCKETS) + 1


def test_concurrent_updates_and_renders_lose_nothing():
    m = WardenMetrics()
    stop = threading.Event()

    def render_loop():
        while not stop.is_set():
            parse(m.render())

    def record():
        for _ in range(2000):
            m.calls.inc(plugin="t", action="a")
            m.latency.observe(0.001, plugin="t")

    renderer = threading.Thread(target=render_loop)
    renderer.start()
    writers = [threading.Thread(target=record) for _ in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    renderer.join()
    assert m.calls.value(plugin="t", action="a") == 8000
    assert m.latency.count(plugin="t") == 8000


def test_a_series_updates_exactly_what_labelled_updates_do():
    r1, r2 = Registry(), Registry()
    for r, bound in ((r1, False), (r2, True)):
        c = r.counter("c_total", "C.", ("plugin", "action"))
        h = r.histogram("h_seconds", "H.", ("plugin",), buckets=(0.1, 1.0))
        for v in (0.05, 0.1, 0.5, 5.0, float("nan")):
            if bound:
                c.labels(plugin="p", action="a").inc()
                h.labels(plugin="p").observe(v)
            else:
                c.inc(plugin="p", action="a")
                h.observe(v, plugin="p")
    assert r1.render() == r2.render()
    with pytest.raises(ValueError):
        r1.counter("c_total", "C.", ("plugin", "action")).labels(plugin="p")  # checked once
