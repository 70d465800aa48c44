"""The sandbox's writable areas (/tmp, /workspace, /dev/shm) put back, after every input of a fork
server, as setup left them: what an input created is removed, and what setup left there and
an input changed (content, mode, a rename, a removal) is written again from a copy taken
right after setup. An area setup left empty costs one directory read per input, or, on tmpfs,
one lstat: tmpfs counts a directory's entries in its size (mm/shmem.c adds BOGO_DIRENT_SIZE
for every link made in it, by any call, and takes it off for every one removed), so an
empty tmpfs directory whose size is what it was when empty holds nothing.

Mounts below an area (a read-only bind of the host's Python or warden under /tmp, when they
live there) are not the area's: they are neither kept nor removed, and the directories that
lead to them stay.

Setup may leave at most ``MAX_KEPT`` bytes in these areas (the copy is held in memory, the one
place a child cannot change); more is refused when the fork server starts.
"""

from __future__ import annotations

import os
import stat

__all__ = ["MAX_KEPT", "Areas"]

MAX_KEPT = 64 << 20


def _fstype(path: str) -> str:
    """The type of the file system mounted at ``path`` ("" when none is)."""
    found = ""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields, _, rest = line.partition(" - ")
            parts = fields.split()
            if len(parts) >= 5 and parts[4] == path:
                found = rest.split(" ", 1)[0]  # the last mount there is the one seen
    return found


def _remove(path: str) -> None:
    """Remove ``path`` and everything under it, whatever modes an input gave them (the owner
    may always chmod), following no link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    os.chmod(path, 0o700)
    with os.scandir(path) as it:
        names = [e.name for e in it]
    for name in names:
        _remove(os.path.join(path, name))
    os.rmdir(path)


def _mounts_below(root: str) -> set[str]:
    """Mount points strictly below ``root``, relative to it (from /proc/self/mountinfo: a bind
    from the same file system has the same st_dev, so the device alone cannot tell)."""
    found: set[str] = set()
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    prefix = root.rstrip("/") + "/"
    for line in lines:
        fields = line.split(b" ")
        if len(fields) < 5:
            continue
        # Octal escapes (\040 for a space) as the kernel writes them.
        point = fields[4].decode("unicode_escape", "replace")
        if point.startswith(prefix):
            found.add(point[len(prefix):])
    return found


def _walk(root: str, skip: frozenset[str] | set[str] = frozenset(),
          mounts: set[str] | None = None) -> dict[str, tuple]:
    """Every path under ``root`` (relative) -> what identifies its state: ctime changes with
    every change of content, mode or name, and no process can set it. A mount point below
    ``root`` (on another device, or in ``skip``) is left out (and added to ``mounts``), and so
    is everything beneath it."""
    dev = os.lstat(root).st_dev
    found: dict[str, tuple] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for entry in it:
                path = os.path.join(rel, entry.name) if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                if st.st_dev != dev or path in skip:
                    if mounts is not None:
                        mounts.add(path)
                    continue
                found[path] = (st.st_mode, st.st_ino, st.st_ctime_ns, st.st_size)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
    return found


class _Area:
    def __init__(self, root: str) -> None:
        self.root = root
        self.mode = stat.S_IMODE(os.lstat(root).st_mode)
        self.mounts: set[str] = set()
        # Inputs cannot mount: the mounts below are found once.
        self.state = _walk(root, _mounts_below(root), self.mounts)
        # Directories that lead to a mount: they stay, with what setup's set-up gave them.
        self.pinned = {os.path.dirname(m) for m in self.mounts}
        for d in list(self.pinned):
            while d:
                self.pinned.add(d)
                d = os.path.dirname(d)
        self.pinned.discard("")
        # The size an empty area has, where that size alone says it is empty (tmpfs).
        self.empty_size = (os.lstat(root).st_size if not self.state and not self.mounts
                           and _fstype(root) == "tmpfs" else None)
        # The copy: (path, mode, file content or link target or None for a directory).
        self.copy: list[tuple[str, int, bytes | str | None]] = []
        for path, (mode, *_rest) in sorted(self.state.items()):
            full = os.path.join(root, path)
            if stat.S_ISDIR(mode):
                self.copy.append((path, mode, None))
            elif stat.S_ISLNK(mode):
                self.copy.append((path, mode, os.readlink(full)))
            elif stat.S_ISREG(mode):
                with open(full, "rb") as f:
                    self.copy.append((path, mode, f.read()))
            # sockets and FIFOs setup left are not kept: the next input starts without them

    def kept(self) -> int:
        return sum(len(c) for _p, _m, c in self.copy if isinstance(c, bytes))

    def restore(self) -> None:
        st = os.lstat(self.root)
        if stat.S_IMODE(st.st_mode) != self.mode:
            os.chmod(self.root, self.mode)
        if not self.state:
            if st.st_size == self.empty_size:
                return
            self._wipe("")
            return
        if _walk(self.root, self.mounts) == self.state:
            return
        self._wipe("")
        dirs = []
        for path, mode, content in self.copy:
            full = os.path.join(self.root, path)
            if path in self.pinned:
                continue  # never removed
            if content is None:
                os.mkdir(full, 0o700)
                dirs.append((full, mode))  # its mode once its entries are back
            elif isinstance(content, str):
                os.symlink(content, full)
            else:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                try:
                    os.write(fd, content)
                finally:
                    os.close(fd)
                os.chmod(full, stat.S_IMODE(mode))
        for full, mode in reversed(dirs):
            os.chmod(full, stat.S_IMODE(mode))
        self.state = _walk(self.root, self.mounts)


    def _wipe(self, rel: str) -> None:
        """Remove everything under ``rel`` but mounts and the directories leading to them."""
        with os.scandir(os.path.join(self.root, rel) if rel else self.root) as it:
            names = [e.name for e in it]
        for name in names:
            path = os.path.join(rel, name) if rel else name
            if path in self.mounts:
                continue
            if path in self.pinned:
                self._wipe(path)
            else:
                _remove(os.path.join(self.root, path))


class Areas:
    """The writable areas that exist in this sandbox, as setup left them."""

    def __init__(self, roots: tuple[str, ...] = ("/tmp", "/workspace", "/dev/shm")) -> None:
        self.areas = [_Area(r) for r in roots if os.path.isdir(r) and os.access(r, os.W_OK)]
        kept = sum(a.kept() for a in self.areas)
        if kept > MAX_KEPT:
            raise OSError(f"setup left {kept} bytes in {', '.join(a.root for a in self.areas)}; "
                          f"a fork server keeps at most {MAX_KEPT} to restore after each input: "
                          "keep large data in memory or read-only")

    def restore(self) -> None:
        for area in self.areas:
            area.restore()
