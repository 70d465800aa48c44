"""File operations on a workspace, every path opened beneath its root by the one rule of
warden.wire.paths: no '..', no absolute path, no symbolic link followed anywhere on the way.

The worker's tool ops run them inside the sandbox, on /workspace; the native provider runs
the same functions on the host for a read-only workspace, which it writes from outside. A
failure is a SandboxFileError (also the matching OSError) whose filename is the path as the
caller gave it, or PathEscapeError.

Written for any Python 3.10+ (they run in a Docker image's Python too).
"""

from __future__ import annotations

import errno
import os
import stat

from warden.errors import PathEscapeError, SandboxFileError, sandbox_file_error
from warden.wire.paths import check_relative, open_beneath, open_dir_beneath

__all__ = ["list_files", "read_file", "remove_file", "write_file"]


def _fail(exc: OSError, path: object, op: str) -> SandboxFileError:
    return sandbox_file_error(exc.errno or errno.EIO, path if isinstance(path, str) else None,
                              op=op)


def _split(path: object) -> tuple[str, str]:
    rel = check_relative(path)
    if rel == ".":
        raise PathEscapeError(f"path {path!r} names the workspace itself; give a path inside "
                              "it", path=path if isinstance(path, str) else None)
    parent, _, name = rel.rpartition("/")
    return parent or ".", name


def write_file(root: str, path: object, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path``, making missing directories on the way."""
    parent, name = _split(path)
    try:
        dirfd = open_dir_beneath(root, parent, create=True)
        try:
            fd = open_beneath(dirfd, name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        finally:
            os.close(dirfd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except PathEscapeError:
        raise
    except OSError as exc:
        raise _fail(exc, path, "write") from None


def read_file(root: str, path: object) -> bytes:
    """The bytes of the regular file at ``path``."""
    check_relative(path)
    try:
        # O_NONBLOCK: a FIFO at the path must not hang the reader on open.
        fd = open_beneath(root, path, os.O_RDONLY | os.O_NONBLOCK)  # type: ignore[arg-type]
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            os.set_blocking(f.fileno(), True)
            return f.read()
    except PathEscapeError:
        raise
    except OSError as exc:
        raise _fail(exc, path, "read") from None


def list_files(root: str, path: object = ".") -> list[dict]:
    """The entries of the directory at ``path``, sorted by name: name, type ("file", "dir"
    or "link", a link not followed) and size."""
    check_relative(path)
    try:
        dirfd = open_dir_beneath(root, path)  # type: ignore[arg-type]
        try:
            with os.scandir(dirfd) as it:
                entries = sorted(it, key=lambda e: e.name)
                out = []
                for e in entries:
                    st = e.stat(follow_symlinks=False)
                    kind = ("dir" if stat.S_ISDIR(st.st_mode) else
                            "link" if stat.S_ISLNK(st.st_mode) else "file")
                    out.append({"name": e.name, "type": kind, "size": st.st_size})
                return out
        finally:
            os.close(dirfd)
    except PathEscapeError:
        raise
    except OSError as exc:
        raise _fail(exc, path, "list") from None


def remove_file(root: str, path: object) -> None:
    """Remove the file, link (not what it points to) or directory tree at ``path``."""
    parent, name = _split(path)
    try:
        dirfd = open_dir_beneath(root, parent)
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _remove_tree(dirfd, name)
            else:
                os.unlink(name, dir_fd=dirfd)
        finally:
            os.close(dirfd)
    except PathEscapeError:
        raise
    except OSError as exc:
        raise _fail(exc, path, "remove") from None


def _remove_tree(dirfd: int, name: str) -> None:
    """rmtree by descriptors: every directory opened beneath its parent with O_NOFOLLOW, so
    that a directory swapped for a link meanwhile is not followed (shutil.rmtree's dir_fd
    is Python 3.11+)."""
    fd = open_beneath(dirfd, name, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                _remove_tree(fd, e.name)
            else:
                os.unlink(e.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dirfd)
