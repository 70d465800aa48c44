"""Opening a file of an untrusted plugin bundle: a regular file, or nothing.

The last component of the name is never followed, and what is not a regular file is never
opened for reading: a FIFO would block the open, and opening a device can act on it (rewind a
tape, hang up a terminal). The name is first opened O_PATH, which opens nothing for I/O; the
very inode that descriptor holds is then reopened for reading, so no name is looked up twice.
"""

from __future__ import annotations

import os
import stat

__all__ = ["NotRegular", "open_regular"]


class NotRegular(Exception):
    """Internal: the name is not a regular file; ``kind`` says what it is. Callers turn it
    into the ManifestError or finding of their context."""

    def __init__(self, kind: str, st: os.stat_result) -> None:
        super().__init__(kind)
        self.kind = kind
        self.stat = st


_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def open_regular(name: str, *, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """A descriptor open for reading (O_NONBLOCK, O_CLOEXEC) on ``name`` and its stat, if it
    is a regular file; NotRegular if not; OSError as os.open raises it."""
    path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(path_fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(kind_of(st.st_mode), st)
        return os.open(f"/proc/self/fd/{path_fd}",
                       os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), st
    finally:
        os.close(path_fd)
