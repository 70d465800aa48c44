"""The asyncio side of a tenant's share of a plugin.

A blocking call runs on one of the engine's threads, which every plugin and tenant share. An
async caller first takes a slot of its (plugin, tenant) gate, sized like its pool: callers
beyond what the pool can serve wait here, in their own event loop, holding no thread. So one
tenant's backlog occupies at most its pool's worth of the shared threads, and another tenant's
call finds one free.
"""

from __future__ import annotations

import asyncio
import collections
import threading

__all__ = ["Gate"]


class _Waiter:
    __slots__ = ("future", "loop", "state")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        # "waiting", then "granted" (the slot is this waiter's) or "dropped" (its loop closed).
        self.state = "waiting"


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Gate:
    """At most ``size`` holders at once; waiters are served in arrival order.

    ``acquire`` is awaited in any event loop (a waiter is woken in its own); ``release`` may
    be called from any thread. A waiter cancelled after it was granted a slot passes the slot
    on, so a cancellation never loses or doubles one.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._held = 0
        self._lock = threading.Lock()
        self._waiting: collections.deque[_Waiter] = collections.deque()

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    async def acquire(self) -> None:
        with self._lock:
            if self._held < self.size and not self._waiting:
                self._held += 1
                return
            waiter = _Waiter(asyncio.get_running_loop())
            self._waiting.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                state = waiter.state
                if state == "waiting":
                    self._waiting.remove(waiter)
            if state == "granted":
                self.release()
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter, else to the gate."""
        with self._lock:
            while self._waiting:
                waiter = self._waiting.popleft()
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:
                    # Its loop is closed: that caller will never run again.
                    waiter.state = "dropped"
                    continue
                waiter.state = "granted"
                return
            self._held -= 1
