"""warden.Engine, Plugin and Pool against real sandboxes of the native provider."""

from __future__ import annotations

import asyncio
import os
import textwrap
import threading
import time

import pytest
import warden
import yaml
from warden.cli import demo
from warden.providers.native.state import state_of
from warden.wire import codec

from tests.conftest import require

TRANSFORM = os.path.join(demo.EXAMPLES, "transform")


def native_ok() -> None:
    from warden.host import doctor

    require(os.geteuid() == 0, "the native sandbox's cgroups need root here")
    require(bool(doctor.report().get("ok")), "this host cannot run the native sandbox "
            "(see `warden doctor`)")


def make_plugin(root, name: str, code: str, **manifest) -> str:
    """A plugin directory under ``root`` with ``plugin.yaml`` and ``src/main.py``."""
    d = os.path.join(str(root), name)
    os.makedirs(os.path.join(d, "src"), exist_ok=True)
    with open(os.path.join(d, "plugin.yaml"), "w") as f:
        yaml.safe_dump({"name": name, **manifest}, f)
    with open(os.path.join(d, "src", "main.py"), "w") as f:
        f.write(textwrap.dedent(code))
    return d


# A worker-local call counter: it tells workers apart without any host-side bookkeeping.
COUNTER = """
    CALLS = [0]

    def handle(action, payload):
        if action == "count":
            CALLS[0] += 1
            return CALLS[0]
        if action == "ping":
            return "pong"
        raise ValueError("unknown action " + action)
"""


@pytest.fixture
def engine():
    native_ok()
    e = warden.Engine()
    yield e
    e.close()


def test_transform_call_and_batch(engine):
    p = engine.load(TRANSFORM)
    assert (p.name, p.version) == ("transform", "1.0.0")
    records = demo.make_batch(0, 500)
    assert p.call("normalize", records[7]) == demo.expected(records[7])
    assert p.call_batch("normalize", records) == [demo.expected(r) for r in records]
    assert p.call("normalize", {"id": 1, "name": "  ada  LOVELACE ", "email": " A@B.ORG ",
                                "amount": "-3.5"}) == {
        "id": 1, "name": "Ada Lovelace", "email": "a@b.org", "cents": -350}


def test_async_calls(engine):
    p = engine.load(TRANSFORM)
    records = demo.make_batch(100, 50)

    async def go():
        one = await p.acall("normalize", records[0])
        many = await p.acall_batch("normalize", records)
        both = await asyncio.gather(*(p.acall("normalize", r) for r in records[:8]))
        return one, many, both

    one, many, both = asyncio.run(go())
    assert one == demo.expected(records[0])
    assert many == [demo.expected(r) for r in records]
    assert list(both) == [demo.expected(r) for r in records[:8]]


def test_large_payload_over_the_frame_cap_both_ways(engine):
    p = engine.load(TRANSFORM)
    note = b"x" * 2000
    n = (codec.DEFAULT_MAX_FRAME // 2000) + 100
    lines = b"".join(b'{"id":%d,"name":"a b","email":"E","amount":"1.00","note":"%s"}\n'
                     % (i, note) for i in range(n))
    assert len(lines) > codec.DEFAULT_MAX_FRAME
    out = p.call("export", lines)
    assert len(out) > codec.DEFAULT_MAX_FRAME
    got = out.splitlines()
    assert len(got) == n
    assert yaml.safe_load(got[-1]) == {"id": n - 1, "name": "A B", "email": "e", "cents": 100,
                                       "note": note.decode()}


def test_bad_manifest_names_the_field(tmp_path, engine):
    d = make_plugin(tmp_path, "bad", COUNTER, resources={"max_memory_mb": "lots"})
    with pytest.raises(warden.ManifestError) as info:
        engine.load(d)
    assert info.value.field == "resources.max_memory_mb"
    assert info.value.value == "lots"


def test_missing_entry_point_is_a_manifest_error(tmp_path, engine):
    d = make_plugin(tmp_path, "noentry", COUNTER, entry_point="lib/absent.py")
    with pytest.raises(warden.ManifestError) as info:
        engine.load(d)
    assert info.value.field == "entry_point"


def test_scanner_refuses_at_load_with_findings(tmp_path, engine):
    d = make_plugin(tmp_path, "sneaky", """
        import subprocess

        def handle(action, payload):
            return subprocess.run(["id"], capture_output=True).stdout
    """)
    with pytest.raises(warden.ScanRejected) as info:
        engine.load(d)
    rules = {(f.rule, f.line) for f in info.value.findings}
    assert ("import-forbidden", 2) in rules
    assert engine.plugins == []


def test_the_manifest_scan_section_is_the_policy(tmp_path, engine):
    code = """
        import json

        def handle(action, payload):
            return json.dumps(payload)
    """
    d = make_plugin(tmp_path, "nojson", code, scan={"forbid_modules": ["json"]},
                    allowed_imports=[])
    with pytest.raises(warden.ScanRejected) as info:
        engine.load(d)
    assert {(f.rule, f.line) for f in info.value.findings} == {("import-forbidden", 2)}
    d = make_plugin(tmp_path, "withjson", code)  # json is allowed by default
    assert engine.load(d).call("x", [1]) == "[1]"


def test_an_image_the_native_provider_cannot_run_is_refused(tmp_path, engine):
    d = make_plugin(tmp_path, "imaged", COUNTER, image="python:3.11-slim")
    with pytest.raises(warden.ProviderUnavailable, match="python:3.11-slim"):
        engine.load(d)
    assert engine.plugins == []


def test_allowed_imports_let_the_scanner_pass(tmp_path, engine):
    d = make_plugin(tmp_path, "withos", """
        import os

        def handle(action, payload):
            return os.getcwd()
    """, allowed_imports=["os"])
    assert engine.load(d).call("cwd") == "/plugin"


def test_inside_the_plugin_root_is_read_only_and_data_writable(tmp_path, engine):
    d = make_plugin(tmp_path, "layout", """
        def handle(action, payload):
            if action == "write-code":
                open("src/new.py", "w").write("x")
            if action == "write-top":
                open("plugin.yaml", "a").write("x")
            if action == "read-manifest":
                return open("plugin.yaml").read().startswith("name:")
            if action == "write-data":
                with open("data/a.txt", "w") as f:
                    f.write("hello")
                return open("data/a.txt").read()
    """)
    p = engine.load(d)
    with pytest.raises(warden.PluginError) as info:
        p.call("write-code")
    assert info.value.type == "OSError" and "Read-only file system" in info.value.message
    # Refused by ownership (the host's file) before the read-only mount is even consulted.
    with pytest.raises(warden.PluginError, match="Read-only file system|Permission denied"):
        p.call("write-top")
    # The whole root is there, at the working directory.
    assert p.call("read-manifest") is True
    assert p.call("write-data") == "hello"
    assert not os.path.exists(os.path.join(d, "src", "new.py"))


def test_tenants_never_share_a_worker(tmp_path, engine):
    d = make_plugin(tmp_path, "tenants", COUNTER, pool={"min_workers": 1, "max_workers": 1})
    p = engine.load(d, tenant="acme")
    assert [p.call("count") for _ in range(3)] == [1, 2, 3]
    assert p.call("count", tenant="globex") == 1
    assert p.call("count") == 4
    a = {h.id for h in p.workers("acme")}
    b = {h.id for h in p.workers("globex")}
    assert a and b and not a & b
    assert all(h.labels["tenant"] == "acme" for h in p.workers("acme"))
    assert all(h.labels["tenant"] == "globex" for h in p.workers("globex"))


def test_workers_are_recycled_after_max_calls(tmp_path, engine):
    d = make_plugin(tmp_path, "recycle", COUNTER,
                    pool={"min_workers": 1, "max_workers": 1, "max_calls_per_worker": 3})
    p = engine.load(d)
    assert [p.call("count") for _ in range(7)] == [1, 2, 3, 1, 2, 3, 1]


def test_idle_workers_are_reaped_down_to_min(tmp_path, engine):
    d = make_plugin(tmp_path, "idle", COUNTER,
                    pool={"min_workers": 0, "max_workers": 2, "idle_seconds": 0})
    p = engine.load(d)
    assert p.workers() == []
    p.call("count")
    handles = p.workers()
    assert len(handles) == 1
    assert engine.reap() == 1
    assert p.workers() == []
    assert not engine.provider.usable(handles[0])


def test_unused_pools_are_reaped_by_the_engine(tmp_path, engine):
    d = make_plugin(tmp_path, "unused", COUNTER,
                    pool={"min_workers": 0, "max_workers": 1, "idle_seconds": 0.2})
    p = engine.load(d)
    p.call("count")
    handle = p.workers()[0]
    # Nobody calls again: the engine's reaper, not a call, must retire the worker.
    for _ in range(100):
        if not engine.provider.usable(handle):
            break
        time.sleep(0.1)
    assert not engine.provider.usable(handle)
    assert p.workers() == []


def test_min_workers_are_started_warm(tmp_path, engine):
    d = make_plugin(tmp_path, "warm", COUNTER, pool={"min_workers": 2, "max_workers": 3})
    p = engine.load(d)
    assert len(p.workers()) == 2


def test_concurrent_callers_stay_within_max_workers(tmp_path, engine):
    d = make_plugin(tmp_path, "busy", """
        import time

        def handle(action, payload):
            time.sleep(0.05)
            return payload
    """, pool={"min_workers": 0, "max_workers": 2})
    p = engine.load(d)
    results: dict[int, object] = {}
    seen: list[int] = []

    def caller(i: int) -> None:
        results[i] = p.call("echo", i)
        seen.append(len(p.workers()))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i for i in range(8)}
    assert max(seen) <= 2


def test_rate_limit_per_plugin_and_tenant(tmp_path, engine):
    d = make_plugin(tmp_path, "limited", COUNTER,
                    resources={"rate_limit": {"calls": 2, "period_seconds": 3600}})
    p = engine.load(d, tenant="a")
    p.call("ping")
    p.call("ping")
    with pytest.raises(warden.RateLimitExceeded) as info:
        p.call("ping")
    assert info.value.retry_after > 0
    assert p.call("ping", tenant="b") == "pong"
    assert 'warden_limits_hit_total{plugin="limited",limit="rate"} 1' in engine.metrics_text()


CRASH_WHEN_USED = """
    import ctypes

    CALLS = [0]

    def handle(action, payload):
        CALLS[0] += 1
        if action.startswith("crash") and CALLS[0] > 1:
            ctypes.string_at(0)
        return "served on call %d of its worker" % CALLS[0]
"""


def test_retry_crashes_of_idempotent_actions_only(tmp_path, engine):
    # A worker crashes on any crash-action after its first call; a fresh worker answers.
    d = make_plugin(tmp_path, "retry", CRASH_WHEN_USED, allowed_imports=["ctypes"],
                    pool={"min_workers": 1, "max_workers": 1},
                    retry={"attempts": 2, "backoff_seconds": 0.0,
                           "idempotent_actions": ["crash-safe"]})
    p = engine.load(d)
    p.call("warm-up")
    assert p.call("crash-safe") == "served on call 1 of its worker"
    p.call("warm-up")
    with pytest.raises(warden.WorkerCrashed) as info:
        p.call("crash-unsafe")
    assert info.value.signal == 11
    assert p.call("ping") == "served on call 1 of its worker"


def test_metrics_text(engine):
    p = engine.load(TRANSFORM)
    p.call("ping")
    p.call_batch("normalize", demo.make_batch(0, 3))
    with pytest.raises(warden.PluginError):
        p.call("no-such-action")
    text = engine.metrics_text()
    assert 'warden_calls_total{plugin="transform",action="ping"} 1' in text
    assert 'warden_calls_total{plugin="transform",action="normalize"} 1' in text
    assert 'warden_call_errors_total{plugin="transform",type="PluginError"} 1' in text
    assert 'warden_call_duration_seconds_count{plugin="transform"} 3' in text
    assert 'warden_workers_alive{plugin="transform"} 1' in text


def test_close_destroys_every_worker(tmp_path):
    native_ok()
    e = warden.Engine()
    p = e.load(make_plugin(tmp_path, "closing", COUNTER, pool={"min_workers": 2}))
    handles = p.workers()
    assert len(handles) == 2
    e.close()
    assert not any(e.provider.usable(h) for h in handles)
    assert not any(os.path.exists(f"/proc/{state_of(h).pid}/root/plugin") for h in handles)
