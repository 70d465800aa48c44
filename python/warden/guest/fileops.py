"""Worker ops of the workspace beyond whole-file reads and writes: stat, mkdir, rename,
entries, and files of any size moved in chunks (``Files.upload``/``download``).

Every path is opened beneath the workspace by warden.wire.paths' one rule, for each chunk
anew: a path component swapped for a link between two chunks is refused, never followed.
A failure is a SandboxFileError with the errno and the path as given.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from warden.errors import PathEscapeError, ProtocolError, SandboxFileError
from warden.guest import files
from warden.guest.cmdargs import WORKSPACE
from warden.wire import ops
from warden.wire.entries import CHUNK, MAX_ENTRIES
from warden.wire.paths import check_relative, open_beneath, open_dir_beneath

__all__ = ["CHUNK", "MAX_ENTRIES", "OPS"]



def _kind(mode: int) -> str:
    return ("dir" if stat.S_ISDIR(mode) else "link" if stat.S_ISLNK(mode) else
            "file" if stat.S_ISREG(mode) else "other")


def _info(name: str, st: os.stat_result) -> dict:
    return {"path": name, "type": _kind(st.st_mode), "size": st.st_size,
            "mode": stat.S_IMODE(st.st_mode), "mtime": st.st_mtime}


@contextlib.contextmanager
def _guard(path: object, op: str) -> Iterator[None]:
    """An OSError inside becomes the SandboxFileError of ``op`` on ``path``."""
    try:
        yield
    except (PathEscapeError, SandboxFileError):
        raise
    except OSError as exc:
        raise files._fail(exc, path, op) from None


def op_stat(msg: dict, fds: list[int], used: set[int]) -> dict:
    path = msg.get("path")
    rel = check_relative(path)
    parent, _, name = rel.rpartition("/")
    with _guard(path, "stat"):
        dirfd = open_dir_beneath(WORKSPACE, parent or ".")
        try:
            st = os.stat(name if rel != "." else ".", dir_fd=dirfd, follow_symlinks=False)
        finally:
            os.close(dirfd)
        return _info(rel, st)


def op_mkdir(msg: dict, fds: list[int], used: set[int]) -> None:
    path, parents = msg.get("path"), msg.get("parents", True)
    rel = check_relative(path)
    with _guard(path, "make directory"):
        if parents:
            os.close(open_dir_beneath(WORKSPACE, rel, create=True))
            return
        parent, _, name = rel.rpartition("/")
        dirfd = open_dir_beneath(WORKSPACE, parent or ".")
        try:
            os.mkdir(name, 0o755, dir_fd=dirfd)
        finally:
            os.close(dirfd)


def op_rename(msg: dict, fds: list[int], used: set[int]) -> None:
    src, dst = msg.get("src"), msg.get("dst")
    (sp, _, sn), (dp, _, dn) = (check_relative(src).rpartition("/"),
                                check_relative(dst).rpartition("/"))
    if not sn or not dn or sn == "." or dn == ".":
        raise PathEscapeError("rename needs paths inside the workspace, not the workspace")
    with _guard(src, "rename"):
        sfd = open_dir_beneath(WORKSPACE, sp or ".")
        try:
            dfd = open_dir_beneath(WORKSPACE, dp or ".", create=True)
            try:
                os.rename(sn, dn, src_dir_fd=sfd, dst_dir_fd=dfd)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)


def op_entries(msg: dict, fds: list[int], used: set[int]) -> list[dict]:
    """The entries under ``path`` (all the tree's with ``recursive``), paths relative to
    ``path``, links not followed; at most MAX_ENTRIES (E2BIG past them)."""
    path, recursive = msg.get("path") or ".", bool(msg.get("recursive"))
    check_relative(path)
    out: list[dict] = []
    with _guard(path, "list"):
        fd = open_dir_beneath(WORKSPACE, path)
        _walk(fd, "", recursive, out)
    return out


def _walk(fd: int, prefix: str, recursive: bool, out: list[dict]) -> None:
    try:
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            st = e.stat(follow_symlinks=False)
            out.append(_info(prefix + e.name, st))
            if len(out) > MAX_ENTRIES:
                raise OSError(errno.E2BIG, f"more than {MAX_ENTRIES} entries")
            if recursive and stat.S_ISDIR(st.st_mode):
                _walk(open_beneath(fd, e.name, os.O_RDONLY | os.O_DIRECTORY),
                      prefix + e.name + "/", True, out)
    finally:
        os.close(fd)


def op_write_chunk(msg: dict, fds: list[int], used: set[int]) -> None:
    """``data`` at ``offset`` of ``path``; ``create`` makes (or truncates) it first."""
    path, data, offset = msg.get("path"), msg.get("data"), msg.get("offset")
    if not isinstance(data, bytes) or len(data) > CHUNK or type(offset) is not int \
            or offset < 0:
        raise ProtocolError("write_chunk needs bytes 'data' of at most 1 MiB and an 'offset'")
    if msg.get("create"):
        files.write_file(WORKSPACE, path, data)
        return
    check_relative(path)
    with _guard(path, "write"):
        fd = open_beneath(WORKSPACE, path, os.O_WRONLY)  # type: ignore[arg-type]
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)


def op_read_chunk(msg: dict, fds: list[int], used: set[int]) -> bytes:
    """At most ``size`` (up to 1 MiB) bytes of ``path`` from ``offset``; b"" at its end."""
    path, offset, size = msg.get("path"), msg.get("offset"), msg.get("size")
    if type(offset) is not int or offset < 0 or type(size) is not int or not 0 < size <= CHUNK:
        raise ProtocolError("read_chunk needs an 'offset' and a 'size' of at most 1 MiB")
    check_relative(path)
    with _guard(path, "read"):
        fd = open_beneath(WORKSPACE, path, os.O_RDONLY | os.O_NONBLOCK)  # type: ignore[arg-type]
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)


OPS = {ops.FILE_STAT: op_stat, ops.FILE_MKDIR: op_mkdir, ops.FILE_RENAME: op_rename,
       ops.FILE_ENTRIES: op_entries, ops.FILE_WRITE_CHUNK: op_write_chunk,
       ops.FILE_READ_CHUNK: op_read_chunk}
