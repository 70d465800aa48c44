"""Work moved off the path of a run: whole sandboxes made ahead of their command, and
cgroups and namespaces removed after the caller has its result.

When a run ends, a background thread makes the next sandbox of the same shape (limits and
network policy): cgroup, network namespace, mount namespace and root, identity, seccomp, and
an init waiting for its command (`_core.PreparedSandbox`). The next run of that shape only
hands the init its argv and waits. The making starts when the run is done, not when its
sandbox is taken: on a host with few cores it would otherwise compete with the very command
it is a replacement for (bench/spawn.py: p50 1.1-1.5 ms against 1.8 ms on 2 cores). Every sandbox serves one command and is never reused: its
cgroup's counters (OOM kills, peak memory, pids.events) start from zero, and nothing of an
earlier command can be in it. When none is ready the caller makes its own, so a burst is
never slower than making them inline; if one is being made for that shape, the caller waits
for it instead, since it is closer to ready than a new one.

A shape not run for IDLE_S seconds has its ready sandboxes closed. Up to DEPTH sandboxes per
shape are kept ready (WARDEN_PREPARE_DEPTH overrides; 0 makes every sandbox on the caller's
path). Only the end of a sandbox makes another: a shape whose sandboxes live long (a pool's
warm workers) has none made beside them.
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
import time
from collections.abc import Callable, Hashable
from functools import partial
from typing import Protocol, TypeVar, cast

from warden import _core
from warden.host import cgroups, identity

__all__ = ["DEPTH", "IDLE_S", "Made", "Preparer", "Ready", "preparer"]

IDLE_S = 60.0
WAIT_FOR_MAKING_S = 2.0


def _default_depth() -> int:
    env = os.environ.get("WARDEN_PREPARE_DEPTH")
    if env is None:
        return 1
    try:
        return max(0, int(env))
    except ValueError:
        raise ValueError(f"WARDEN_PREPARE_DEPTH must be a whole number, got {env!r}") from None


DEPTH = _default_depth()


class Made(Protocol):
    """What the preparer keeps ready: something that can say it is still usable, and be
    closed (on the preparer's thread) when it is not handed out after all."""

    def ready(self) -> bool: ...
    def close(self) -> None: ...


M = TypeVar("M", bound=Made)


class Ready:
    """One sandbox made ahead for warden.run: the waiting init, its cgroup, its network
    namespace and its host id."""

    __slots__ = ("box", "cgroup", "netns", "host_id", "key")

    def __init__(self, box: _core.PreparedSandbox, cgroup: cgroups.SandboxCgroup,
                 netns: int, host_id: identity.HostId) -> None:
        self.box = box
        self.cgroup = cgroup
        self.netns = netns
        self.host_id = host_id
        self.key: Hashable | None = None  # set while a caller has it (Preparer.sandbox)

    def ready(self) -> bool:
        return self.box.ready()

    def close(self, fds: tuple[int, ...] = ()) -> None:
        _destroy(self.cgroup, (self.netns, *fds), self.box, self.host_id)


class Preparer:
    def __init__(self, depth: int = DEPTH, idle_s: float = IDLE_S) -> None:
        self.depth = depth
        self.idle_s = idle_s
        self.wait_for_making_s = WAIT_FOR_MAKING_S
        self._cond = threading.Condition()
        self._ready: dict[Hashable, collections.deque[Made]] = {}
        self._making: dict[Hashable, int] = {}
        self._owed: set[Hashable] = set()  # shapes a sandbox ended for: make the next
        # key -> (how to make one, when it was last asked for)
        self._wanted: dict[Hashable, tuple[Callable[[], Made], float]] = {}
        self._doomed: collections.deque[Callable[[], None]] = collections.deque()
        self._busy = 0
        self._closed = False
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._loop, name="warden-prepare", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------------

    def sandbox(self, key: Hashable, make: Callable[[], M]) -> M:
        """A sandbox of shape ``key``, ready for its command: one made ahead, or ``make()``.
        Say finished(key) once it is gone (done() does that for a Ready), so that the next
        one of its shape is made."""
        got = None
        with self._cond:
            pooled = self.depth > 0 and not self._closed
            if pooled:
                self._wanted[key] = (make, time.monotonic())
                got = self._take(key)
                # One being made is closer to ready than a new one; but never wait on it
                # for longer than making one takes with the host under load.
                until = time.monotonic() + self.wait_for_making_s
                while got is None and self._making.get(key) and time.monotonic() < until:
                    self._cond.wait(until - time.monotonic())
                    got = self._take(key)
        if got is None:
            got = make()
        if isinstance(got, Ready):
            got.key = key if pooled else None
        # What is kept under a key was made by that key's make(): of make's type.
        return cast(M, got)

    def done(self, ready: Ready, fds: tuple[int, ...] = ()) -> None:
        """The command in ``ready`` has ended (or will never start): remove it, with ``fds``,
        in the background, and make the next one of its shape."""
        key, ready.key = ready.key, None
        self._later(partial(ready.close, fds))
        if key is not None:
            self.finished(key)

    def finished(self, key: Hashable) -> None:
        """A sandbox of shape ``key`` that sandbox() handed out is gone: make the next."""
        with self._cond:
            if key in self._wanted:
                self._owed.add(key)
                self._cond.notify_all()

    def retire(self, which: Callable[[Hashable], bool]) -> None:
        """Stop making sandboxes of the shapes ``which`` selects, close their ready ones, and
        wait until that is done (one being made is closed when it is)."""
        with self._cond:
            for key in [k for k in self._wanted if which(k)]:
                del self._wanted[key]
            self._retire_ready(which)
            self._cond.notify_all()
            while self._doomed or self._busy:
                self._cond.wait(0.05)

    def _take(self, key: Hashable) -> Made | None:
        q = self._ready.get(key)
        while q:
            r = q.popleft()
            if r.ready():
                return r
            # It died while it waited (killed from outside): never start such a one.
            self._doomed.append(r.close)
        return None

    def cgroup(self, memory_bytes: int, pids: int, cpus: float, *,
               freezer: bool = False) -> cgroups.SandboxCgroup:
        # Every sandbox warden makes has its own pid namespace, whose init's death kills all
        # of it: the freezer's race-free kill is never needed. A long-lived sandbox asks for
        # it all the same (v1), for pause(): its processes join it at birth, so none escapes.
        return cgroups.driver().create(memory_bytes, pids, cpus, freezer=freezer)

    def netns(self) -> int:
        return _core.netns_create()

    def release(self, cg: cgroups.SandboxCgroup, fds: tuple[int, ...] = (),
                box: _core.PreparedSandbox | None = None,
                host_id: identity.HostId | None = None) -> None:
        """Remove ``cg`` and close ``fds`` (and ``box``, killed if it never started) in the
        background, then hand back ``host_id``. A descriptor here may hold the last reference
        to a namespace, whose teardown then happens on this thread, not the caller's."""
        self._later(partial(_destroy, cg, fds, box, host_id))

    def _later(self, job: Callable[[], None]) -> None:
        with self._cond:
            if not self._closed:
                self._doomed.append(job)
                self._cond.notify_all()
                return
        job()

    def drain(self) -> None:
        """Close the ready sandboxes and wait until everything released is removed."""
        with self._cond:
            self._wanted.clear()
            self._retire_ready(lambda key: True)
            self._cond.notify_all()
            while self._doomed or self._busy:
                self._cond.wait(0.05)
        self._raise_errors()

    def close(self) -> None:
        self.drain()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _raise_errors(self) -> None:
        if self._errors:
            raise self._errors.pop(0)

    def _retire_ready(self, which: Callable[[Hashable], bool]) -> None:
        for key in [k for k in self._ready if which(k)]:
            for r in self._ready.pop(key):
                self._doomed.append(r.close)

    # -- the thread ----------------------------------------------------------------------------

    def _next_job(self):
        while True:
            if self._closed:
                return None
            if self._doomed:
                return ("destroy", self._doomed.popleft())
            now = time.monotonic()
            idle = [k for k, (_, t) in self._wanted.items() if now - t > self.idle_s]
            for key in idle:
                del self._wanted[key]
            self._retire_ready(lambda key: key not in self._wanted)
            if self._doomed:
                continue
            self._owed &= self._wanted.keys()
            for key in list(self._owed):
                if len(self._ready.get(key, ())) + self._making.get(key, 0) >= self.depth:
                    self._owed.discard(key)
                    continue
                self._making[key] = self._making.get(key, 0) + 1
                return ("make", (key, self._wanted[key][0]))
            oldest = min((t for _, t in self._wanted.values()), default=None)
            self._cond.wait(None if oldest is None else max(0.01, oldest + self.idle_s - now))

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
                    arg()
                else:
                    key, make = arg
                    r = make()
                    with self._cond:
                        if key in self._wanted and not self._closed:
                            self._ready.setdefault(key, collections.deque()).append(r)
                        else:
                            self._doomed.append(r.close)
            except BaseException as exc:
                with self._cond:
                    if kind == "make":
                        # The caller makes its own and sees the error itself; stop trying.
                        self._wanted.pop(arg[0], None)
                    else:
                        self._errors.append(exc)
            finally:
                with self._cond:
                    if kind == "make":
                        self._making[arg[0]] -= 1
                    self._busy -= 1
                    self._cond.notify_all()


def _destroy(cg: cgroups.SandboxCgroup, fds: tuple[int, ...],
             box: _core.PreparedSandbox | None, host_id: identity.HostId | None = None) -> None:
    if box is not None:
        box.close()
    for fd in fds:
        os.close(fd)
    cg.destroy()
    # Only once the cgroup is empty and gone: nothing runs as the id any more. Should the
    # removal fail, the id stays taken for this process's life rather than be shared.
    if host_id is not None:
        host_id.release()


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


def _forget_in_child() -> None:
    # A forked child has none of the parent's threads; the sandboxes stay the parent's
    # (PreparedSandbox never kills one from a process other than its maker).
    global _preparer, _lock
    _preparer = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
