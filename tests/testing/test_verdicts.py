"""Each verdict of a fork server provoked for real, with its exact signal, and buckets that are
stable across fork servers and distinct for distinct bugs."""

from __future__ import annotations

import signal

import pytest
import warden

from tests.plugins.test_plugins import native_ok

SETUP = '''
import ctypes, os, signal

def helper(kind):
    if kind == "value":
        raise ValueError("bad value")
    if kind == "key":
        raise KeyError("missing")

def target(x):
    kind = x[0] if isinstance(x, tuple) else x
    if kind in ("value", "key"):
        helper(kind)
    if kind == "value-elsewhere":
        raise ValueError("bad value")
    if kind == "segv":
        ctypes.string_at(0)
    if kind == "abort":
        os.abort()
    if kind == "wall":
        while True:
            pass
    if kind == "memory":
        keep = [bytearray(8 << 20) for _ in range(64)]
    if kind == "exit":
        os._exit(3)
    if kind == "echo":
        return x
    return kind
'''


def test_ok_returns_the_value(fs):
    v = fs.run(("echo", 2**80, {1, 2}, frozenset({3}), (4, 5), 1 + 2j))
    assert v.outcome == "ok"
    assert v.value == ("echo", 2**80, {1, 2}, frozenset({3}), (4, 5), 1 + 2j)
    assert v.bucket is None and v.signal is None
    assert v.duration_s > 0 and v.peak_memory_bytes > 0


def test_exception_with_type_message_traceback(fs):
    v = fs.run("value")
    assert v.outcome == "exception"
    assert v.exception.type == "ValueError"
    assert v.exception.message == "bad value"
    assert "in helper" in v.exception.traceback and "raise ValueError" in v.exception.traceback
    assert "warden/guest" not in v.exception.traceback


def test_segfault_is_a_crash_by_sigsegv(fs):
    v = fs.run("segv")
    assert (v.outcome, v.signal) == ("crash", signal.SIGSEGV)
    assert b"Segmentation fault" in v.stderr and b"in target" in v.stderr


def test_abort_is_a_crash_by_sigabrt_not_sigsegv(fs):
    v = fs.run("abort")
    assert (v.outcome, v.signal) == ("crash", signal.SIGABRT)


def test_wall_timeout_kills_the_input_only(fs):
    v = fs.run("wall")
    assert (v.outcome, v.signal) == ("timeout", signal.SIGKILL)
    assert fs.run("echo").outcome == "ok"


def test_memory_over_the_input_limit(fs):
    v = fs.run("memory")
    assert v.outcome == "memory"
    assert v.exception.type == "MemoryError"
    assert fs.run("echo").outcome == "ok"


def test_exit_without_a_result_is_a_crash_with_its_code(fs):
    v = fs.run("exit")
    assert (v.outcome, v.exit_code, v.signal) == ("crash", 3, None)


def test_cpu_limit_is_a_timeout():
    native_ok()
    per = warden.Limits(wall_time_s=20, cpu_time_s=1)
    with warden.ForkServer(SETUP, per_input=per) as server:
        v = server.run("wall")
    assert v.outcome == "timeout"
    assert v.signal in (signal.SIGXCPU, signal.SIGKILL)


def test_buckets_same_bug_same_bucket_across_servers(fs):
    first = {k: fs.run(k).bucket for k in ("value", "key", "value-elsewhere", "segv", "abort")}
    # Another input hitting the same bug, and a new fork server: the same buckets.
    assert fs.run(("value", "other input")).bucket == first["value"]
    with warden.ForkServer(SETUP, per_input=warden.Limits(wall_time_s=3)) as other:
        again = {k: other.run(k).bucket for k in first}
    assert again == first
    # Distinct bugs: a different type, the same type raised elsewhere, segv vs abort.
    assert len(set(first.values())) == len(first)


def test_unsendable_input_is_invalid_argument_before_anything_runs(fs):
    with pytest.raises(warden.InvalidArgument) as info:
        fs.run(object())
    assert info.value.argument == "input"
    with pytest.raises(warden.InvalidArgument):
        list(fs.map(["echo", object()], jobs=1))


def test_setup_errors_and_bad_entry():
    native_ok()
    with pytest.raises(warden.InvalidArgument):
        warden.ForkServer("def target(:\n")
    with pytest.raises(warden.PluginError) as info:
        warden.ForkServer("raise RuntimeError('setup broke')\n")
    assert "setup broke" in str(info.value)
    with pytest.raises(warden.PluginError) as info:
        warden.ForkServer("x = 1\n", entry="target")
    assert "target" in str(info.value)


def test_map_in_order_over_several_servers(fs):
    inputs = [("echo", i) for i in range(150)] + ["abort", ("echo", -1)]
    verdicts = list(fs.map(inputs, jobs=2))
    assert [v.value for v in verdicts[:150]] == inputs[:150]
    assert verdicts[150].signal == signal.SIGABRT
    assert verdicts[151].value == ("echo", -1)
