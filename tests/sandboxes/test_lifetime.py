"""Sandbox(ttl_s=..., idle_timeout_s=...): real sandboxes that close themselves, and the
SandboxExpired of their next use. Waits are polls with generous deadlines, never speeds."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import threading
import time

import pytest
import warden
from warden import InvalidArgument, SandboxExpired
from warden.providers.native.state import state_of
from warden.sandboxes import lifetime

from tests.plugins.test_plugins import native_ok


def _gone(box: warden.Sandbox, timeout: float = 20.0) -> None:
    """Wait until the sandbox's init has exited (the expiry closed it)."""
    pid = state_of(box._handle).pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state_of(box._handle).destroyed and not os.path.exists(f"/proc/{pid}/root/proc"):
            return
        time.sleep(0.05)
    raise AssertionError(f"sandbox {box.id} was not closed within {timeout}s")


def test_a_sandbox_closes_at_its_ttl_and_its_next_use_says_so():
    native_ok()
    box = warden.Sandbox(ttl_s=1.0)
    p = box.spawn(["sleep", "600"])
    assert box.exec(["echo", "hi"]).stdout == b"hi\n"
    _gone(box)
    for op in (lambda: box.exec(["true"]), lambda: box.files.read("x"), p.poll,
               box.processes, lambda: box.pause()):
        with pytest.raises(SandboxExpired, match="ttl of 1s") as info:
            op()
        assert (info.value.reason, info.value.sandbox, info.value.after_s) == ("ttl", box.id, 1.0)
    box.close()  # allowed, and nothing to do


def test_an_idle_sandbox_closes_but_a_used_one_does_not():
    native_ok()
    box = warden.Sandbox(idle_timeout_s=1.0)
    # Used more often than its idle timeout, for several times that timeout: it stays.
    until = time.monotonic() + 3.0
    while time.monotonic() < until:
        box.files.write("a", b"x")
        time.sleep(0.2)
    assert box.files.read("a") == b"x"
    # A process running inside is not an operation: left alone, the sandbox is closed.
    box.spawn(["sleep", "600"])
    _gone(box)
    with pytest.raises(SandboxExpired, match="idle") as info:
        box.exec(["true"])
    assert info.value.reason == "idle"


def test_an_operation_in_flight_is_not_idleness():
    native_ok()
    with warden.Sandbox(idle_timeout_s=0.5) as box:
        # One exec longer than the idle timeout: the sandbox is busy, not idle.
        r = box.exec(["sleep", "2"], timeout=30)
        assert r.exit_code == 0
        assert box.exec(["echo", "still"]).stdout == b"still\n"


def test_a_paused_sandbox_idles_and_is_closed_without_being_thawed():
    native_ok()
    box = warden.Sandbox(idle_timeout_s=1.0)
    box.spawn(["python3", "-c", "while True: pass"])
    box.pause()
    _gone(box)
    with pytest.raises(SandboxExpired):
        box.resume()


def test_a_dropped_sandbox_is_still_closed_at_its_ttl():
    native_ok()
    box = warden.Sandbox(ttl_s=1.0)
    pid = state_of(box._handle).pid
    del box
    gc.collect()
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{pid}/root/proc") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}/root/proc")


def test_many_sandboxes_share_one_timer_thread():
    native_ok()
    boxes = [warden.Sandbox(ttl_s=600, idle_timeout_s=600) for _ in range(5)]
    try:
        names = [t.name for t in threading.enumerate()]
        assert names.count("warden-lifetimes") == 1
    finally:
        for b in boxes:
            b.close()


@pytest.mark.parametrize("name", ["ttl_s", "idle_timeout_s"])
@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, True, "10", 10**400])
def test_lifetimes_are_checked_before_anything_is_made(name, value):
    with pytest.raises(InvalidArgument, match=name):
        warden.Sandbox(**{name: value})


def test_the_timer_expires_by_ttl_and_idle_without_a_sandbox():
    closed: list[str] = []
    life = lifetime.Lifetime("box-1", None, 0.2, lambda: closed.append("box-1"))
    life.enter()
    t0 = time.monotonic()
    assert life.check(t0 + 1.0) is not None  # in flight: not idle
    life.leave()
    lifetime.watch(life)
    deadline = time.monotonic() + 10
    while not closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert closed == ["box-1"]
    err = life.error()
    assert isinstance(err, SandboxExpired) and err.reason == "idle"


def test_an_async_sandbox_expires_too():
    native_ok()

    async def main() -> None:
        async with warden.AsyncSandbox(ttl_s=1.0) as sb:
            assert (await sb.exec(["echo", "a"])).stdout == b"a\n"
            await sb.pause()
            assert sb.paused
            await sb.resume()
            _gone(sb._sync())
            with pytest.raises(SandboxExpired):
                await sb.exec(["true"])

    asyncio.run(main())
