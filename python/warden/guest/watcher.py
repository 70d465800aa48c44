"""The file watcher of ``Sandbox.watch``: a process of the sandbox started with this file's
source (``python3 -I -u -c SOURCE ROOT RECURSIVE MAX_WATCHES``), its events read by the host
as a spawned process's stdout is (warden.guest.procs), so that they are bounded, buffered and
ended the way every process's output is.

It watches ROOT (relative to its working directory, the workspace) with one inotify instance,
and with RECURSIVE ("1") every directory below it, adding the directories made later (and
reporting what was made in them before their watch was in place). Links are never followed:
directories are found with lstat-like scandir entries and watched with IN_DONT_FOLLOW and
IN_ONLYDIR. Each line on stdout is one JSON map:

- ``{"ready": N}`` once N directories are watched; nothing is reported before it;
- ``{"kind": K, "path": P, "dest": D, "dir": B}``, K one of created, modified, deleted,
  moved (D the destination for moved, else null), paths relative to the workspace;
- ``{"kind": "overflow"}`` when the kernel's queue overflowed and events were lost;
- ``{"error": "limit", "limit": L, "errno": E, "watched": N}`` when a kernel limit
  (``max_user_instances``, ``max_user_watches``) or warden's MAX_WATCHES stops a watch, after
  which it exits with status 3: a watch never goes on partially;
- ``{"error": "gone", "errno": E}`` when ROOT is not a directory it can watch (status 4).

It exits once its stdin reaches end of file or it is killed; the kernel then frees the
instance and its watches. Imports only the standard library: it runs under the sandbox's
Python (a container's too).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import select
import struct
import sys

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK = 0x01000000, 0x02000000, 0x04000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
# IN_MODIFY alone for changes: a writer that keeps its file open is seen as it writes.
MASK = (IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
_HEADER = struct.Struct("iIII")
# Names the kernel gives are at most NAME_MAX; paths we build at most PATH_MAX.
_PATH_MAX = 4096

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class LimitReached(Exception):
    def __init__(self, limit: str, err: int) -> None:
        super().__init__(limit)
        self.limit, self.err = limit, err


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")


class Watcher:
    def __init__(self, root: str, recursive: bool, max_watches: int) -> None:
        self.root, self.recursive, self.max_watches = root, recursive, max_watches
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            if err == errno.EMFILE:
                raise LimitReached("max_user_instances", err)
            raise OSError(err, os.strerror(err))
        self.paths: dict[int, str] = {}  # watch descriptor -> directory, workspace-relative
        self.wds: dict[str, int] = {}

    def add(self, path: str) -> bool:
        """Watch directory ``path``; False when it is gone or not a directory (any more)."""
        if len(self.paths) >= self.max_watches and path not in self.wds:
            raise LimitReached("max_watches", errno.ENOSPC)
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC:
                raise LimitReached("max_user_watches", err)
            if err in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES):
                return False
            raise OSError(err, os.strerror(err), path)
        old = self.paths.get(wd)
        if old is not None and old != path:
            self.wds.pop(old, None)
        self.paths[wd] = path
        self.wds[path] = wd
        return True

    def add_tree(self, path: str, report: bool) -> None:
        """Watch ``path`` and, when recursive, the directories below it; with ``report``,
        what is already in them is reported as created (it came before the watch)."""
        if not self.add(path) or not self.recursive:
            return
        stack = [path]
        while stack:
            top = stack.pop()
            try:
                with os.scandir(top) as it:
                    found = list(it)
            except OSError:
                continue
            for entry in found:
                sub = join(top, entry.name)
                is_dir = entry.is_dir(follow_symlinks=False)
                if report:
                    emit({"kind": "created", "path": sub, "dest": None, "dir": is_dir})
                if is_dir and self.add(sub):
                    stack.append(sub)

    def moved_dir(self, old: str, new: str) -> None:
        """Directories watched below ``old`` now live below ``new``."""
        for wd, path in list(self.paths.items()):
            if path == old or path.startswith(old + "/"):
                moved = new + path[len(old):]
                self.wds.pop(path, None)
                self.paths[wd] = moved
                self.wds[moved] = wd


def join(top: str, name: str) -> str:
    return name if top == "." else f"{top}/{name}"


def events(buf: bytes) -> list[tuple[int, int, int, str]]:
    out, at = [], 0
    while at + _HEADER.size <= len(buf):
        wd, mask, cookie, size = _HEADER.unpack_from(buf, at)
        raw = buf[at + _HEADER.size:at + _HEADER.size + size].split(b"\0", 1)[0]
        out.append((wd, mask, cookie, os.fsdecode(raw)))
        at += _HEADER.size + size
    return out


def handle(w: Watcher, batch: list[tuple[int, int, int, str]]) -> bool:
    """Report one read's events; False once the root itself is gone."""
    moves: dict[int, tuple[str, bool]] = {}
    alive, last = True, ""
    for wd, mask, cookie, name in batch:
        if mask & IN_Q_OVERFLOW:
            emit({"kind": "overflow"})
            continue
        top = w.paths.get(wd)
        if top is None:
            continue
        if mask & IN_IGNORED:
            w.paths.pop(wd, None)
            if w.wds.get(top) == wd:
                del w.wds[top]
            alive = alive and top != w.root
            continue
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            if top == w.root:
                emit({"kind": "deleted", "path": top, "dest": None, "dir": True})
                alive = False
            continue
        path = join(top, name)
        if len(os.fsencode(path)) > _PATH_MAX:
            continue
        is_dir = bool(mask & IN_ISDIR)
        if mask & IN_MOVED_FROM:
            moves[cookie] = (path, is_dir)
        elif mask & IN_MOVED_TO:
            src = moves.pop(cookie, None)
            if src is not None:
                emit({"kind": "moved", "path": src[0], "dest": path, "dir": is_dir})
                if is_dir:
                    w.moved_dir(src[0], path)
            else:
                emit({"kind": "created", "path": path, "dest": None, "dir": is_dir})
                if is_dir and w.recursive:
                    w.add_tree(path, report=True)
        elif mask & IN_CREATE:
            emit({"kind": "created", "path": path, "dest": None, "dir": is_dir})
            if is_dir and w.recursive:
                w.add_tree(path, report=True)
        elif mask & IN_DELETE:
            emit({"kind": "deleted", "path": path, "dest": None, "dir": is_dir})
        elif mask & IN_MODIFY:
            if last != path:  # one write after another to one file is one change
                emit({"kind": "modified", "path": path, "dest": None, "dir": is_dir})
            last = path
            continue
        last = ""
    # Moved out of the watched tree: gone from it.
    for path, is_dir in moves.values():
        emit({"kind": "deleted", "path": path, "dest": None, "dir": is_dir})
    return alive


def serve(w: Watcher) -> None:
    poller = select.poll()
    poller.register(w.fd, select.POLLIN)
    poller.register(0, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == 0:
                if not os.read(0, 4096):
                    return
                continue
            try:
                buf = os.read(w.fd, 1 << 16)
            except BlockingIOError:
                continue
            alive = handle(w, events(buf))
            sys.stdout.flush()
            if not alive:
                return


def main(argv: list[str]) -> int:
    root, recursive, max_watches = argv[1], argv[2] == "1", int(argv[3])
    try:
        w = Watcher(root, recursive, max_watches)
        w.add_tree(root, report=False)
        if root not in w.wds:
            emit({"error": "gone", "errno": errno.ENOTDIR})
            return 4
        emit({"ready": len(w.wds)})
        sys.stdout.flush()
        serve(w)
    except LimitReached as exc:
        watched = len(w.wds) if "w" in locals() else 0
        emit({"error": "limit", "limit": exc.limit, "errno": exc.err, "watched": watched})
        return 3
    finally:
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
