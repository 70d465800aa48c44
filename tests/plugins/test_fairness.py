"""One tenant's slow calls cannot starve another tenant's: async callers beyond a tenant's
pool wait in the event loop (warden.plugins.gate) instead of holding the engine's shared
threads, and sync callers wait on their own tenant's pool. Real sandboxes, native provider;
the assertions are on the order calls finish in, not on how long they took."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import warden
from warden.plugins.gate import Gate

from tests.plugins.test_plugins import make_plugin, native_ok

SLOW = """
    import time

    def handle(action, payload):
        if action == "slow":
            time.sleep(0.2)
        if action == "slower":
            time.sleep(1.0)
        return action
"""


@pytest.fixture
def plugin(tmp_path):
    native_ok()
    engine = warden.Engine()
    d = make_plugin(tmp_path, "fair", SLOW, pool={"min_workers": 1, "max_workers": 4},
                    resources={"timeout_seconds": 60, "rate_limit": None})
    p = engine.load(d)
    # Both tenants' pools warm: what the order shows is waiting, not a worker's start.
    assert p.call("ping", tenant="a") == p.call("ping", tenant="b") == "ping"
    yield p
    engine.close()


def test_a_backlog_of_async_calls_does_not_delay_another_tenants_call(plugin):
    finished: list[tuple[str, int]] = []

    async def one(tenant: str, action: str, i: int) -> None:
        assert await plugin.acall(action, tenant=tenant) == action
        finished.append((tenant, i))

    async def go() -> None:
        backlog = [asyncio.ensure_future(one("a", "slow", i)) for i in range(200)]
        await asyncio.sleep(0)  # every call of A made before B's
        await one("b", "ping", 0)
        for task in backlog:
            task.cancel()
        await asyncio.gather(*backlog, return_exceptions=True)
        # The cancelled calls gave back every share they held: A is served as before.
        together = asyncio.gather(*(plugin.acall("ping", tenant="a") for _ in range(8)))
        assert await asyncio.wait_for(together, 60) == ["ping"] * 8

    asyncio.run(go())
    done_before_b = finished.index(("b", 0))
    assert done_before_b < 20, f"B finished after {done_before_b} of A's calls"


def test_sync_callers_wait_on_their_own_tenants_pool(plugin):
    finished: list[str] = []
    lock = threading.Lock()

    def call(tenant: str, action: str) -> None:
        plugin.call(action, tenant=tenant)
        with lock:
            finished.append(tenant)

    # Long enough that all of A's callers are queued however loaded the host is.
    threads = [threading.Thread(target=call, args=("a", "slower")) for _ in range(20)]
    for t in threads:
        t.start()
    pool = plugin.pool("a")
    deadline = time.monotonic() + 30
    while len(pool._queue) < 16 and time.monotonic() < deadline:  # A's 4 workers are busy
        time.sleep(0.01)
    assert len(pool._queue) >= 16
    call("b", "ping")
    for t in threads:
        t.join()
    # Behind A's queue, B would finish last; it finishes within A's first rounds.
    assert finished.index("b") < 8, finished


def test_the_gate_serves_in_order_and_a_cancelled_waiter_loses_nothing():
    gate = Gate(1)
    order: list[int] = []

    async def holder(i: int, hold: asyncio.Event) -> None:
        await gate.acquire()
        order.append(i)
        await hold.wait()
        gate.release()

    async def go() -> None:
        hold = asyncio.Event()
        tasks = [asyncio.ensure_future(holder(i, hold)) for i in range(4)]
        await asyncio.sleep(0)
        assert (gate.held, gate.waiting) == (1, 3)
        tasks[2].cancel()                       # waiting: it leaves the queue
        await asyncio.sleep(0)
        assert gate.waiting == 2
        hold.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert order == [0, 1, 3] and (gate.held, gate.waiting) == (0, 0)

    asyncio.run(go())


def test_a_waiter_cancelled_after_its_grant_passes_the_slot_on():
    gate = Gate(1)

    async def go() -> None:
        await gate.acquire()
        first = asyncio.ensure_future(gate.acquire())
        second = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0)
        gate.release()          # granted to first, which is cancelled before it runs
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 10)
        assert (gate.held, gate.waiting) == (1, 0)
        gate.release()
        assert gate.held == 0

    asyncio.run(go())


def test_the_gate_wakes_waiters_of_other_threads_event_loops():
    gate = Gate(1)
    got = threading.Event()

    async def hold_then_release(release_now: threading.Event) -> None:
        await gate.acquire()
        await asyncio.get_running_loop().run_in_executor(None, release_now.wait)
        gate.release()

    async def wait_in_other_loop() -> None:
        await gate.acquire()
        got.set()
        gate.release()

    release_now = threading.Event()
    holder = threading.Thread(target=asyncio.run, args=(hold_then_release(release_now),))
    holder.start()
    while gate.held == 0:
        time.sleep(0.01)
    other = threading.Thread(target=asyncio.run, args=(wait_in_other_loop(),))
    other.start()
    while gate.waiting == 0:
        time.sleep(0.01)
    release_now.set()
    holder.join(30)
    other.join(30)
    assert got.is_set() and gate.held == 0
