"""Sandboxes that close themselves: at their ``ttl_s``, or after ``idle_timeout_s`` idle.

Idle means no operation of the sandbox in flight and none started for that long. An operation
is any request through the Sandbox (and its Files, Process, Terminal and notebook): exec,
call, spawn, a file op, a read of a process's output, ``processes()``, ``pause()``... Processes
running inside do not count on their own: a server an agent backgrounded and no one talks to
is what an idle timeout is for. To keep one alive, poll it (``Process.poll()``,
``sb.processes()``) more often than the idle timeout, or set no idle timeout. A paused sandbox
idles like any other; the ttl runs on wall time whatever the sandbox does.

At expiry the sandbox is closed (everything in it killed, a paused one without being thawed)
and every later use of that Sandbox raises SandboxExpired; ``close()`` stays allowed. An
operation in flight at the ttl ends first (or at its own timeout): the sandbox's requests are
never cut in the middle of a reply.

One timer thread per process serves every sandbox (a heap of due times); closing happens on a
short-lived thread of its own, so that a slow teardown delays no other sandbox's expiry.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from warden.errors import SandboxExpired

__all__ = ["Lifetime", "Tracked", "watch"]

_log = logging.getLogger("warden")

# Provider methods that are not operations of the sandbox: they neither count as activity nor
# are refused after expiry (destroy is close(), allowed at any time; paused is a query).
_UNTRACKED = frozenset({"destroy", "paused", "capabilities", "check", "usable", "close",
                        "area_dir"})


class Lifetime:
    """One sandbox's ttl and idle clock. ``closer`` closes the sandbox; it is dropped once
    the sandbox is closed, so that a finished entry waiting in the timer holds nothing."""

    def __init__(self, sandbox: str, ttl_s: float | None, idle_s: float | None,
                 closer: Callable[[], None]) -> None:
        self.sandbox = sandbox
        self.ttl_s = ttl_s
        self.idle_s = idle_s
        self._born = self._last = time.monotonic()
        self._in_flight = 0
        self._lock = threading.Lock()
        # Everything below is written under _lock.
        self._closer: Callable[[], None] | None = closer
        self._expired: tuple[str, float] | None = None

    def error(self) -> SandboxExpired | None:
        got = self._expired
        return None if got is None else SandboxExpired(self.sandbox, *got)

    def enter(self) -> None:
        """An operation starts: refused once expired."""
        with self._lock:
            if self._expired is not None:
                raise SandboxExpired(self.sandbox, *self._expired)
            self._in_flight += 1
            self._last = time.monotonic()

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._last = time.monotonic()

    def finish(self) -> None:
        """The sandbox was closed by its user: nothing more to do for it."""
        with self._lock:
            self._closer = None

    def first_due(self) -> float:
        return min(self._born + (self.ttl_s or float("inf")),
                   self._last + (self.idle_s or float("inf")))

    def check(self, now: float) -> float | None:
        """At a due time: expire the sandbox, or say when to look again (None: never)."""
        with self._lock:
            if self._closer is None or self._expired is not None:
                return None
            ttl_at = self._born + self.ttl_s if self.ttl_s is not None else float("inf")
            idle_at = float("inf")
            if self.idle_s is not None:
                # In flight: not idle; looked at again one idle period on.
                idle_at = (now + self.idle_s if self._in_flight
                           else self._last + self.idle_s)
            if now < ttl_at and now < idle_at:
                return min(ttl_at, idle_at)
            if now >= ttl_at:
                self._expired = ("ttl", ttl_at - self._born)
            else:
                self._expired = ("idle", float(self.idle_s or 0.0))
            closer, self._closer = self._closer, None
        threading.Thread(target=_close_quietly, args=(self.sandbox, closer), daemon=True,
                         name=f"warden-expire-{self.sandbox}").start()
        return None


def _close_quietly(sandbox: str, closer: Callable[[], None]) -> None:
    try:
        closer()
    except Exception:  # the timer's own thread: the failure is logged, never lost
        _log.exception("closing expired sandbox %s failed", sandbox)


class Tracked:
    """A provider seen through one sandbox's Lifetime: each method call is an operation
    (refused with SandboxExpired once the sandbox expired, counted while in flight), except
    those of _UNTRACKED. An error of an operation that the expiry cut short is raised as
    SandboxExpired, with the provider's error as its cause."""

    def __init__(self, provider: Any, life: Lifetime) -> None:
        self._provider = provider
        self._life = life

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._provider, name)
        if name in _UNTRACKED or not callable(attr):
            return attr
        life = self._life

        def operation(*args: Any, **kwargs: Any) -> Any:
            life.enter()
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                expired = life.error()
                if expired is not None:
                    raise expired from exc
                raise
            finally:
                life.leave()

        return operation


class _Timer:
    """The process's one timer thread: a heap of (due, seq, Lifetime)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Lifetime]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._pid = -1

    def add(self, life: Lifetime) -> None:
        with self._cv:
            heapq.heappush(self._heap, (life.first_due(), next(self._seq), life))
            if self._pid != os.getpid():  # first use, or a forked child: no thread yet
                self._pid = os.getpid()
                threading.Thread(target=self._run, daemon=True, name="warden-lifetimes").start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cv.wait(wait)
                _due, _seq, life = heapq.heappop(self._heap)
            again = life.check(time.monotonic())
            if again is not None:
                with self._cv:
                    heapq.heappush(self._heap, (again, next(self._seq), life))


_TIMER = _Timer()


def watch(life: Lifetime) -> None:
    """Have the process's timer close ``life``'s sandbox when it is due."""
    _TIMER.add(life)
