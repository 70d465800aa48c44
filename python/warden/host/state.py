"""warden's state on the host: one private directory, and in it one area per warden process
for the host-side directories of its sandboxes (read-only workspaces, plugin snapshots).

The state directory is ``WARDEN_STATE_DIR`` if set, else ``/run/warden`` for root, else
``$XDG_RUNTIME_DIR/warden``. It is made mode 0700 and must belong to warden's own user: a
directory there that belongs to anyone else, or a link, is refused (SandboxSetupError
"state-dir"), never used. Nothing of it lies under the shared ``/tmp``.

``areas/<pid>-<starttime>`` is the area of one warden process (owner.py says why a pid alone
names no process). Where warden may mount (root), it is a tmpfs of its own, mode 0700, private
to the host's mount namespace: the sandboxes' mounts of it then show paths relative to it, not
to the host's file system, in their /proc/self/mountinfo. Each sandbox's directory in it is made
mode 0700: no host user but warden's own can enter the area, and a sandbox reads its own
directory only through the idmapped read-only mount that warden's core makes for it
(cpp/jail/idmap.h), never through a host path. The area goes when its process exits; the area
of a process that died without removing it is swept by the next warden process that makes its
own (and by the native provider's reconcile).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import logging
import os
import shutil
import stat
import tempfile
import threading

from warden.errors import SandboxSetupError
from warden.host import owner

__all__ = ["Areas", "areas", "sweep", "state_dir"]

log = logging.getLogger("warden")

_MS_NOSUID = 2
_MS_NODEV = 4
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 2


def _default_dir() -> str:
    if os.geteuid() == 0:
        return "/run/warden"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        raise SandboxSetupError(
            "state-dir", errno.ENOENT,
            "warden keeps its host state in $WARDEN_STATE_DIR, else /run/warden (root) or "
            "$XDG_RUNTIME_DIR/warden; none is set: set WARDEN_STATE_DIR to a directory of "
            "your own")
    return os.path.join(runtime, "warden")


def _private_dir(path: str) -> str:
    """``path``, made if missing, as a directory of warden's user alone (mode 0700)."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        st = os.lstat(path)
    except OSError as exc:
        raise SandboxSetupError("state-dir", exc.errno or errno.EIO,
                                f"making warden's state directory {path} (set "
                                "WARDEN_STATE_DIR to a writable place)") from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SandboxSetupError(
            "state-dir", errno.EPERM,
            f"{path} is not a directory of warden's own user (uid {os.geteuid()}): a link or "
            "another user's directory is never used for warden's state; remove it or set "
            "WARDEN_STATE_DIR")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def state_dir() -> str:
    """warden's private state directory, made mode 0700 if missing."""
    path = os.environ.get("WARDEN_STATE_DIR") or _default_dir()
    return _private_dir(os.path.abspath(path))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount_tmpfs(path: str, size: int | None = None) -> bool:
    """A tmpfs of warden's own over ``path``, private to this mount namespace (at most
    ``size`` bytes, and an inode per 4 KiB of it, when given); False where warden may not
    mount (not root), which leaves a plain directory."""
    opts = f"mode=0700,uid={os.geteuid()},gid={os.getegid()}"
    if size is not None:
        opts += f",size={max(size, 4096)},nr_inodes={max(size // 4096, 64)}"
    libc = _libc()
    if libc.mount(b"warden", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                  opts.encode()) != 0:
        log.debug("warden: no tmpfs for %s (%s): a plain directory", path,
                  os.strerror(ctypes.get_errno()))
        return False
    # Mounts made on it later (none are) and its removal never travel to other namespaces.
    libc.mount(None, os.fsencode(path), None, _MS_PRIVATE, None)
    return True


def _is_mount(path: str) -> bool:
    try:
        return os.lstat(path).st_dev != os.lstat(os.path.dirname(path)).st_dev
    except OSError:
        return False


def _remove(path: str) -> None:
    if _is_mount(path):
        # Detached: a sandbox still holding a clone of it keeps only that clone.
        _libc().umount2(os.fsencode(path), _MNT_DETACH)
    shutil.rmtree(path, ignore_errors=True)


def _owner_of(name: str) -> tuple[int, int] | None:
    pid, _, start = name.partition("-")
    if not (pid.isdigit() and start.isdigit()):
        return None
    return int(pid), int(start)


def sweep(base: str | None = None) -> list[str]:
    """Remove the areas of warden processes that are gone; the paths removed."""
    top = os.path.join(base or state_dir(), "areas")
    removed: list[str] = []
    try:
        names = os.listdir(top)
    except FileNotFoundError:
        return removed
    for name in names:
        who = _owner_of(name)
        if who is None or owner.alive(*who):
            continue
        path = os.path.join(top, name)
        _remove(path)
        removed.append(path)
    return removed


class Areas:
    """One warden process's area: ``path``, mode 0700; ``make()`` a directory in it."""

    def __init__(self, base: str) -> None:
        top = _private_dir(os.path.join(base, "areas"))
        sweep(base)
        pid = os.getpid()
        self.path = os.path.realpath(
            _private_dir(os.path.join(top, f"{pid}-{owner.proc_starttime(pid)}")))
        self.mounted = _mount_tmpfs(self.path)
        self._pid = pid

    def make(self, prefix: str, size: int | None = None) -> str:
        """A new directory of this area, mode 0700 (mkdtemp makes it so). ``size``: where the
        area is a tmpfs of its own, the directory is one too, of at most ``size`` bytes, so
        that what is written there for one sandbox (its read-only workspace, filled by the
        tool layer from outside) is bounded by that sandbox's disk limit, and its df shows
        nothing of the other sandboxes' directories."""
        path = tempfile.mkdtemp(prefix=prefix, dir=self.path)
        if size is not None and self.mounted and not _mount_tmpfs(path, size):
            err = ctypes.get_errno() or errno.EIO
            os.rmdir(path)
            raise SandboxSetupError("workspace directory", err,
                                    "mounting a tmpfs of the sandbox's disk size on its "
                                    "read-only workspace")
        return path

    def remove(self, path: str) -> None:
        """Remove a directory that ``make`` made, its tmpfs with it. An empty one goes by
        rmdir, which needs no descriptor (the undo of a sandbox that ran out of them)."""
        if _is_mount(path):
            _libc().umount2(os.fsencode(path), _MNT_DETACH)
        try:
            os.rmdir(path)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)

    def holds(self, path: str) -> bool:
        """True for a path inside this area."""
        return os.path.realpath(path).startswith(self.path + "/")

    def close(self) -> None:
        # A forked child exiting must not remove its parent's area.
        if os.getpid() == self._pid:
            _remove(self.path)


_areas: Areas | None = None
_lock = threading.Lock()


def areas() -> Areas:
    """This process's area, made (and stale ones swept) on first use, removed at exit."""
    global _areas
    with _lock:
        if _areas is None:
            _areas = Areas(state_dir())
            atexit.register(_areas.close)
        return _areas


def _forget_in_child() -> None:
    global _areas, _lock
    _areas = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
