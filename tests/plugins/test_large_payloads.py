"""Payloads larger than a frame through a plugin and through ``Sandbox.call``, on the native
provider: a 32 MiB round trip fits a 64 MiB sandbox, holding about one copy of the payload
inside it (the request's memfd is the host's pages, mapped; the result leaves through a pipe
or, when it is the payload itself, as the same memfd)."""

from __future__ import annotations

import os

import pytest
import warden
from warden.providers.native.state import state_of
from warden.wire import codec

from tests.conftest import require
from tests.plugins.test_plugins import make_plugin, native_ok

MIB = 1 << 20
SIZE = 32 * MIB
assert SIZE > codec.DEFAULT_MAX_FRAME

# ``payload`` arrives as a read-only memoryview over the host's memfd.
HANDLER = """
    def handle(action, payload):
        if action == "echo":
            return payload
        if action == "reverse":
            out = bytearray(payload)   # the one copy inside the sandbox
            out.reverse()
            return out
        if action == "copy_twice":
            return bytes(payload).upper()
        if action == "type":
            return type(payload).__name__
        if action == "ping":
            return "pong"
        raise ValueError(action)
"""


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def plugin(tmp_path):
    native_ok()
    os.chmod(tmp_path, 0o755)
    engine = warden.Engine()
    d = make_plugin(tmp_path, "large", HANDLER, resources={"max_memory_mb": 64},
                    pool={"min_workers": 1, "max_workers": 1})
    try:
        yield engine.load(d)
    finally:
        engine.close()


def _usage(cg) -> int:
    """The cgroup's memory use now (v1 memory.usage_in_bytes, v2 memory.current)."""
    dirs = getattr(cg, "_dirs", None)
    path = (os.path.join(dirs["memory"], "memory.usage_in_bytes") if dirs is not None
            else os.path.join(cg.path, "memory.current"))
    with open(path) as f:
        return int(f.read())


def _growth(handle, fn):
    """``(fn(), how far the sandbox's memory peak rose above its use before the call)``."""
    cg = state_of(handle).cgroup
    window = cg.peak_window()
    require(window is not None, "this kernel cannot reset a cgroup's memory peak (v2 before "
            "Linux 6.12)")
    before = _usage(cg)
    try:
        result = fn()
    finally:
        peak = window.finish()
    assert peak is not None
    return result, peak - before


@pytest.mark.parametrize("action, expect", [
    ("echo", lambda d: d),
    ("reverse", lambda d: d[::-1]),
])
def test_a_32_mib_round_trip_fits_a_64_mib_plugin(plugin, data, action, expect):
    (handle,) = plugin.workers()
    got, grown = _growth(handle, lambda: plugin.call(action, data))
    assert got == expect(data)
    # Inside the sandbox: nothing of the payload for an echo (the same memfd goes back),
    # one copy for a transform (the handler's own result). Three copies (frame, unpacked
    # bytes, packed reply) would not fit at all.
    limit = 2 * MIB if action == "echo" else SIZE + 12 * MIB
    assert grown < limit, f"the sandbox's peak rose by {grown / MIB:.1f} MiB"
    assert plugin.workers()[0].id == handle.id  # the same worker, still serving
    assert plugin.call("ping") == "pong"


def test_a_payload_the_sandbox_cannot_hold_twice_is_a_memory_error(plugin, data):
    """The handler copies the payload twice: 64 MiB in a 64 MiB sandbox. The sandbox is
    OOM-killed and the caller gets MemoryLimitExceeded; the host is unharmed and the pool
    serves the next call from a fresh worker."""
    (before,) = plugin.workers()
    with pytest.raises(warden.MemoryLimitExceeded, match="64 MiB"):
        plugin.call("copy_twice", data)
    assert plugin.call("ping") == "pong"
    assert plugin.workers()[0].id != before.id


def test_a_64_mib_payload_into_a_64_mib_plugin_fails_with_a_warden_error(plugin):
    payload = os.urandom(64 * MIB)
    with pytest.raises(warden.MemoryLimitExceeded):
        plugin.call("reverse", payload)
    assert plugin.call("ping") == "pong"


def test_sandbox_call_takes_and_returns_32_mib(data):
    native_ok()
    with warden.Sandbox(limits=warden.Limits(memory_mb=64, wall_time_s=60)) as sb:
        sb.call("def size(b):\n    return len(b)\n", b"")
        got, grown = _growth(sb._handle, lambda: sb.call(
            "def flip(b):\n    out = bytearray(b)\n    out.reverse()\n    return out\n", data))
        assert got == data[::-1]
        assert grown < SIZE + 12 * MIB, f"the sandbox's peak rose by {grown / MIB:.1f} MiB"
        # A value, not bytes, over the frame cap goes msgpack-encoded beside the frame too.
        rows = [data[i:i + MIB] for i in range(0, 20 * MIB, MIB)]
        assert sb.call("def count(rows):\n    return [len(r) for r in rows]\n", rows) \
            == [MIB] * 20
        assert sb.call("size", data) == SIZE


def test_below_the_frame_cap_a_payload_arrives_as_bytes_in_one_copy(plugin):
    """4 MiB: beside the frame (a memfd) but handed over as bytes, as inline; over the cap,
    the mapping itself."""
    (handle,) = plugin.workers()
    small = os.urandom(4 * MIB)
    kind, grown = _growth(handle, lambda: plugin.call("type", small))
    assert kind == "bytes"
    # One copy (4 MiB), not the frame's buffer and the decoded bytes beside it.
    assert grown < 6 * MIB, f"the sandbox's peak rose by {grown / MIB:.1f} MiB"
    assert plugin.call("reverse", small) == small[::-1]
    assert plugin.call("type", os.urandom(SIZE)) == "memoryview"
