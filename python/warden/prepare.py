"""Work moved off the path of a run: cgroups and network namespaces made ahead of time, and
cgroups removed after the caller has its result.

A background thread keeps a few of each ready (on hosts with cores to spare; see DEPTH). Every one is handed out once and never reused:
a cgroup's counters (OOM kills, peak memory, pids.events) must start from zero for the verdict
to be exact, and a network namespace must hold nothing of an earlier sandbox. When the pool is
empty the caller makes its own, so a burst is never slower than without the pool.
"""

from __future__ import annotations

import atexit
import collections
import os
import threading

from warden import _core, cgroups

__all__ = ["Preparer", "preparer"]

def _default_depth() -> int:
    """How many of each to keep ready. Making them takes the kernel's cgroup and network
    locks and this process's GIL, so it only pays with a core to spare: on a 2-core host the
    background work competes with the very run it prepares for (bench/spawn.py measured p50
    7.1 ms with 4 ready against 4.65 ms making them inline), and only the removal after the
    run is left in the background. WARDEN_PREPARE_DEPTH overrides."""
    env = os.environ.get("WARDEN_PREPARE_DEPTH")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            raise ValueError(f"WARDEN_PREPARE_DEPTH must be a whole number, got {env!r}") from None
    return 4 if (os.cpu_count() or 1) > 2 else 0


DEPTH = _default_depth()


def _create(key: tuple) -> cgroups.SandboxCgroup:
    # Every sandbox warden makes has its own pid namespace, whose init's death kills all of
    # it: the freezer's race-free kill is never needed.
    memory_bytes, pids, cpus = key
    return cgroups.driver().create(memory_bytes, pids, cpus, freezer=False)


class Preparer:
    def __init__(self, depth: int = DEPTH) -> None:
        self.depth = depth
        self._cond = threading.Condition()
        self._cgroups: dict[tuple, collections.deque] = {}
        self._netns: collections.deque[int] = collections.deque()
        self._doomed: collections.deque = collections.deque()
        self._wanted: set[tuple] = set()
        self._busy = 0
        self._closed = False
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._loop, name="warden-prepare", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------------

    def cgroup(self, memory_bytes: int, pids: int, cpus: float) -> cgroups.SandboxCgroup:
        key = (memory_bytes, pids, cpus)
        with self._cond:
            self._wanted.add(key)
            ready = self._cgroups.get(key)
            cg = ready.popleft() if ready else None
            self._cond.notify()
        return cg if cg is not None else _create(key)

    def netns(self) -> int:
        with self._cond:
            fd = self._netns.popleft() if self._netns else None
            self._cond.notify()
        return fd if fd is not None else _core.netns_create()

    def release(self, cg: cgroups.SandboxCgroup, fds: tuple[int, ...] = ()) -> None:
        """Remove ``cg`` and close ``fds`` in the background (the sandbox's processes are
        gone or going). A descriptor here may hold the last reference to a namespace, whose
        teardown then happens on this thread, not the caller's."""
        with self._cond:
            if self._closed:
                for fd in fds:
                    os.close(fd)
                cg.destroy()
                return
            self._doomed.append((cg, fds))
            self._cond.notify()

    def drain(self) -> None:
        """Wait until every released cgroup is removed, and remove the ready ones too."""
        with self._cond:
            self._wanted.clear()
            ready = [(cg, ()) for q in self._cgroups.values() for cg in q]
            self._cgroups.clear()
            self._doomed.extend(ready)
            self._cond.notify()
            while self._doomed or self._busy:
                self._cond.wait(0.05)
        self._raise_errors()

    def close(self) -> None:
        self.drain()
        with self._cond:
            self._closed = True
            fds = list(self._netns)
            self._netns.clear()
            self._cond.notify()
        for fd in fds:
            os.close(fd)
        self._thread.join(timeout=5)

    def _raise_errors(self) -> None:
        if self._errors:
            err = self._errors.pop(0)
            raise err

    # -- the thread ----------------------------------------------------------------------------

    def _next_job(self):
        while True:
            if self._closed:
                return None
            if self._doomed:
                return ("destroy", self._doomed.popleft())
            if len(self._netns) < self.depth:
                return ("netns", None)
            for key in self._wanted:
                if len(self._cgroups.setdefault(key, collections.deque())) < self.depth:
                    return ("cgroup", key)
            self._cond.wait()

    def _loop(self) -> None:
        while True:
            with self._cond:
                job = self._next_job()
                if job is None:
                    return
                self._busy += 1
            kind, arg = job
            try:
                if kind == "destroy":
                    cg, fds = arg
                    for fd in fds:
                        os.close(fd)
                    cg.destroy()
                elif kind == "netns":
                    fd = _core.netns_create()
                    with self._cond:
                        self._netns.append(fd)
                else:
                    cg = _create(arg)
                    with self._cond:
                        self._cgroups.setdefault(arg, collections.deque()).append(cg)
            except BaseException as exc:  # noqa: BLE001 - kept and raised to the next drain()
                with self._cond:
                    self._errors.append(exc)
                    if kind == "cgroup":
                        self._wanted.discard(arg)
                    if kind == "netns":
                        # Without namespaces made ahead, callers make their own.
                        self.depth = 0
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()


_preparer: Preparer | None = None
_lock = threading.Lock()


def preparer() -> Preparer:
    """The process's preparer, started on first use and drained at exit."""
    global _preparer
    with _lock:
        if _preparer is None or _preparer._closed:
            cgroups.driver()  # detected first, so its own exit hook runs after ours
            _preparer = Preparer()
            atexit.register(_preparer.close)
        return _preparer
