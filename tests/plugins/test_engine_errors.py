"""Every error a plugin call can end in, provoked for real in a real sandbox; after each one
the engine serves the next call."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import warden
from warden.cli import demo
from warden.wire import codec

from tests.plugins.test_plugins import make_plugin, native_ok

HOSTILE = os.path.join(demo.EXAMPLES, "hostile")


@pytest.fixture
def engine():
    native_ok()
    e = warden.Engine()
    yield e
    e.close()


def _still_serving(engine, plugin) -> None:
    assert plugin.call("ping") == "pong"
    assert all(engine.provider.usable(h) for h in plugin.workers())


def test_timeout_kills_the_worker_and_the_next_call_succeeds(engine):
    p = engine.load(os.path.join(HOSTILE, "infinite_loop"))
    p.call("ping")
    old = p.workers()
    with pytest.raises(warden.TimeoutExceeded):
        p.call("spin")
    assert not any(engine.provider.usable(h) for h in old)
    assert not {h.id for h in old} & {h.id for h in engine.provider.list()}
    _still_serving(engine, p)


def test_memory_bomb_is_oom_killed(engine):
    p = engine.load(os.path.join(HOSTILE, "memory_bomb"))
    with pytest.raises(warden.MemoryLimitExceeded) as info:
        p.call("bomb")
    assert "64 MiB" in str(info.value)
    _still_serving(engine, p)


def test_disk_filler_hits_its_quota(engine):
    p = engine.load(os.path.join(HOSTILE, "disk_filler"))
    with pytest.raises(warden.DiskQuotaExceeded) as info:
        p.call("fill")
    assert "8 MiB" in str(info.value)
    _still_serving(engine, p)


def test_fork_bomb_meets_the_pids_limit(engine):
    p = engine.load(os.path.join(HOSTILE, "fork_bomb"))
    # EAGAIN raised by the plugin itself, limit not reached: the plugin's own error.
    with pytest.raises(warden.PluginError) as own:
        p.call("eagain")
    assert own.value.type == "BlockingIOError"
    with pytest.raises(warden.PidsLimitExceeded) as info:
        p.call("bomb")
    # max_pids 16 counts the worker and every process it made; the refusal is the kernel's.
    assert "pids limit of 16" in str(info.value) and "[Errno 11]" in str(info.value)
    assert engine.metrics.limits_hit.value(plugin="fork_bomb", limit="pids") == 1
    _still_serving(engine, p)


def test_host_file_is_not_there(tmp_path, engine):
    secret = tmp_path / "secret.txt"
    secret.write_text("host only")
    p = engine.load(os.path.join(HOSTILE, "host_file"))
    with pytest.raises(warden.PluginError) as info:
        p.call("read", str(secret))
    assert info.value.type == "FileNotFoundError"
    _still_serving(engine, p)


def test_socket_refused_by_scanner_then_by_the_network_namespace(engine):
    import socket

    with pytest.raises(warden.ScanRejected) as info:
        engine.load(os.path.join(HOSTILE, "socket_scanned"))
    assert any(f.rule == "import-forbidden" for f in info.value.findings)
    p = engine.load(os.path.join(HOSTILE, "socket_kernel"))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        with pytest.raises(warden.PluginError) as err:
            p.call("connect", listener.getsockname()[1])
        assert err.value.type == "ConnectionRefusedError"
        with pytest.raises(BlockingIOError):
            listener.accept()
    _still_serving(engine, p)


def test_crash_reports_the_signal(tmp_path, engine):
    d = make_plugin(tmp_path, "segv", """
        import ctypes

        def handle(action, payload):
            if action == "crash":
                ctypes.string_at(0)
            return "pong"
    """, allowed_imports=["ctypes"])
    p = engine.load(d)
    with pytest.raises(warden.WorkerCrashed) as info:
        p.call("crash")
    assert info.value.signal == signal.SIGSEGV
    _still_serving(engine, p)


def test_plugin_error_carries_type_message_and_traceback(tmp_path, engine):
    d = make_plugin(tmp_path, "raiser", """
        def handle(action, payload):
            if action == "raise":
                raise KeyError("no such record: " + str(payload))
            return "pong"
    """)
    p = engine.load(d)
    before = p.workers()
    with pytest.raises(warden.PluginError) as info:
        p.call("raise", 42)
    assert info.value.type == "KeyError"
    assert "no such record: 42" in info.value.message
    assert "main.py" in info.value.traceback and "raise KeyError" in info.value.traceback
    # The plugin's own exception is its answer: the worker stays.
    _still_serving(engine, p)
    assert [h.id for h in p.workers()] == [h.id for h in before]


def test_reply_over_the_frame_cap_comes_back_whole(tmp_path, engine):
    d = make_plugin(tmp_path, "bigreply", f"""
        def handle(action, payload):
            if action == "big":
                return b"x" * {codec.DEFAULT_MAX_FRAME + 1}
            return "pong"
    """, resources={"max_memory_mb": 256})
    p = engine.load(d)
    assert p.call("big") == b"x" * (codec.DEFAULT_MAX_FRAME + 1)
    _still_serving(engine, p)


def test_reply_over_what_the_host_takes_is_refused_by_the_worker(tmp_path, engine):
    from warden.providers.native import NativeProvider

    # The host takes at most its decode budget beside a reply (here the absolute cap, 8 MiB);
    # the worker refuses a larger result itself and keeps serving.
    capped = warden.Engine(NativeProvider(max_decode_bytes=8 << 20))
    d = make_plugin(tmp_path, "bigreply", """
        def handle(action, payload):
            if action == "big":
                return b"x" * (12 << 20)
            return "pong"
    """, resources={"max_memory_mb": 256})
    try:
        p = capped.load(d)
        before = [h.id for h in p.workers()]
        with pytest.raises(warden.PayloadTooLarge):
            p.call("big")
        _still_serving(capped, p)
        assert [h.id for h in p.workers()] == before
    finally:
        capped.close()


def test_rate_limit_then_other_tenant_served(tmp_path, engine):
    d = make_plugin(tmp_path, "rl", """
        def handle(action, payload):
            return "pong"
    """, resources={"rate_limit": {"calls": 1, "period_seconds": 3600}})
    p = engine.load(d, tenant="t1")
    p.call("ping")
    with pytest.raises(warden.RateLimitExceeded):
        p.call("ping")
    assert p.call("ping", tenant="t2") == "pong"


LATE = """
    import time

    def handle(action, payload):
        if action == "slow":
            end = time.monotonic() + 3
            while time.monotonic() < end:
                pass
        return payload
"""


def test_a_late_reply_never_reaches_another_caller(tmp_path, engine):
    d = make_plugin(tmp_path, "late", LATE, resources={"timeout_seconds": 1,
                                                       "rate_limit": None},
                    pool={"min_workers": 2, "max_workers": 3})
    p = engine.load(d)
    wrong: list[tuple[str, object]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def quick(n: int) -> None:
        i = 0
        while not stop.is_set():
            token = f"caller-{n}-{i}"
            try:
                got = p.call("echo", token)
            except warden.WardenError as exc:
                errors.append(exc)
                continue
            if got != token:
                wrong.append((token, got))
            i += 1

    def slow() -> None:
        for i in range(2):
            try:
                got = p.call("slow", f"LATE-{i}")
            except warden.TimeoutExceeded:
                continue
            wrong.append((f"LATE-{i}", got))

    threads = [threading.Thread(target=quick, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    s = threading.Thread(target=slow)
    s.start()
    s.join()
    # A little longer than the slow action itself, so its reply would have had time to land.
    stop.wait(3.5)
    stop.set()
    for t in threads:
        t.join()
    assert wrong == []
    assert errors == []
    assert p.call("echo", "after") == "after"
