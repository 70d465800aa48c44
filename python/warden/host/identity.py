"""Host ids for sandboxes: one unprivileged host uid (and gid, the same number) per live sandbox.

The kernel keeps some budgets per user: inotify instances and watches, queued signals
(RLIMIT_SIGPENDING), POSIX message-queue bytes (RLIMIT_MSGQUEUE) and namespaces are counted
per (user namespace, uid) and charged up the namespace chain to each namespace's owner
(kernel/ucount.c); pipe buffers (fs.pipe-user-pages-soft) and descriptors in flight over unix
sockets are counted per host uid. A sandbox runs as its own id from this range and its user
namespace is owned by that id, so whatever it spends of these budgets is its own, never host
root's nor another sandbox's.

The range is ``WARDEN_UID_BASE`` (default 2000000000) to ``WARDEN_UID_BASE + WARDEN_UID_COUNT``
(default 65536), the same numbers for gids. The base itself is the set-up id: inside root while
warden's own set-up code prepares the sandbox, never the id of anything the sandbox runs, and
owner of nothing outside it. Each live sandbox holds one of the ``COUNT`` ids above it. No host
account may use the range; ``/etc/subuid`` and ``/etc/subgid`` lines such as
``warden:2000000000:65537`` reserve it against tools that hand out subordinate ids.

Two warden processes on one host never hold the same id: a sandbox's id is a POSIX record lock
on one byte (the id's offset) of one lock file, ``WARDEN_ID_LOCK`` (default
``/run/warden/host-ids.lock``, one file for the whole host whatever state directory each
warden process keeps), held while the sandbox lives. The kernel drops the locks of a
process that dies, so a crashed warden leaves no id taken. Record locks belong to a process,
not to a descriptor, so the process also keeps a set of the ids it holds itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading

from warden.errors import InvalidArgument, SandboxSetupError

__all__ = ["DEFAULT_BASE", "DEFAULT_COUNT", "DEFAULT_LOCK", "HostId", "IdPool", "acquire",
           "overlaps", "pool"]

DEFAULT_BASE = 2_000_000_000
DEFAULT_COUNT = 65_536
DEFAULT_LOCK = "/run/warden/host-ids.lock"
# Ids at or above this are the kernel's invalid id (-1) or near it; below the floor live the
# host's accounts and the overflow ids 65534/65535.
_ID_CEILING = 2**32 - 2
_ID_FLOOR = 65_536


class HostId:
    """One sandbox's host id, held until release(). ``setup_id`` is the range's set-up id."""

    __slots__ = ("id", "setup_id", "_pool", "_released")

    def __init__(self, pool: IdPool, id: int) -> None:
        self.id = id
        self.setup_id = pool.base
        self._pool = pool
        self._released = False

    def config(self) -> dict[str, int]:
        """The spawn-config entries that give a sandbox this identity."""
        return {"host_id": self.id, "outside_base": self.setup_id}

    def release(self) -> None:
        """Hand the id back; only once nothing of the sandbox runs any more (idempotent)."""
        if not self._released:
            self._released = True
            self._pool.release(self.id)

    def __repr__(self) -> str:
        return f"HostId({self.id})"


class IdPool:
    def __init__(self, base: int = DEFAULT_BASE, count: int = DEFAULT_COUNT,
                 lock_path: str = DEFAULT_LOCK) -> None:
        if not _ID_FLOOR <= base or count < 1 or base + count > _ID_CEILING:
            raise InvalidArgument(
                "WARDEN_UID_BASE/WARDEN_UID_COUNT", f"{base}/{count}",
                f"a range of at least one id above the set-up id, within {_ID_FLOOR}.."
                f"{_ID_CEILING}")
        self.base = base
        self.count = count
        self.lock_path = lock_path
        self._lock = threading.Lock()
        self._fd = -1
        self._held: set[int] = set()
        # Processes start at different places, so that two of them rarely try the same ids.
        self._next = os.getpid() % count

    def acquire(self) -> HostId:
        """A free id of the range, locked for this process until released."""
        with self._lock:
            fd = self._open()
            for step in range(self.count):
                slot = (self._next + step) % self.count
                if slot in self._held:
                    continue
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EACCES):
                        continue  # another warden process holds it
                    raise SandboxSetupError("host-id", exc.errno or errno.EIO,
                                            f"locking {self.lock_path}") from exc
                self._held.add(slot)
                self._next = (slot + 1) % self.count
                return HostId(self, self.base + 1 + slot)
        raise SandboxSetupError(
            "host-id", errno.EAGAIN,
            f"all {self.count} sandbox host ids above WARDEN_UID_BASE={self.base} are in use; "
            "close sandboxes or raise WARDEN_UID_COUNT (and the /etc/subuid reservation)")

    def release(self, id: int) -> None:
        slot = id - self.base - 1
        with self._lock:
            if slot not in self._held:
                return
            self._held.discard(slot)
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, slot)

    def held(self) -> frozenset[int]:
        """The ids this process holds now."""
        with self._lock:
            return frozenset(self.base + 1 + s for s in self._held)

    def _open(self) -> int:
        if self._fd < 0:
            try:
                os.makedirs(os.path.dirname(self.lock_path), mode=0o700, exist_ok=True)
                self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise SandboxSetupError("host-id", exc.errno or errno.EIO,
                                        f"opening the id lock file {self.lock_path} (set "
                                        "WARDEN_ID_LOCK to a writable path)") from exc
        return self._fd

    def _forget(self) -> None:
        # A forked child holds none of its parent's record locks (fcntl(2)): its copy of the
        # set would name ids it does not hold.
        self._lock = threading.Lock()
        self._held = set()
        if self._fd >= 0:
            os.close(self._fd)  # releases this process's locks only: it has none
            self._fd = -1


def overlaps(subid_text: str, base: int, count: int, owner: str = "warden") -> list[str]:
    """Lines of an /etc/subuid-style text (``name:first:count``) whose range meets the sandbox
    range [base, base + count] and whose name is not ``owner``."""
    found = []
    for line in subid_text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0].startswith("#"):
            continue
        name, first, n = parts
        if not (first.isdigit() and n.isdigit()) or name == owner:
            continue
        if int(first) <= base + count and base <= int(first) + int(n) - 1:
            found.append(line.strip())
    return found


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(name, raw, "a whole number") from None


_pool: IdPool | None = None
_pool_lock = threading.Lock()


def pool() -> IdPool:
    """The process's pool, configured from WARDEN_UID_BASE, WARDEN_UID_COUNT, WARDEN_ID_LOCK."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = IdPool(_env_int("WARDEN_UID_BASE", DEFAULT_BASE),
                           _env_int("WARDEN_UID_COUNT", DEFAULT_COUNT),
                           os.environ.get("WARDEN_ID_LOCK", DEFAULT_LOCK))
        return _pool


def acquire() -> HostId:
    """A host id for one new sandbox, from the process's pool."""
    return pool().acquire()


def _forget_in_child() -> None:
    global _pool_lock
    _pool_lock = threading.Lock()
    if _pool is not None:
        _pool._forget()


os.register_at_fork(after_in_child=_forget_in_child)
