"""The one rule that keeps a path given for a sandbox's area inside that area.

Lexically (``check_relative``): relative, no NUL, no '..'. Where it is opened
(``open_beneath``): beneath a root descriptor, with no symbolic link followed anywhere on the
way, in one race-free step. A link that points inside the area is refused as well: telling
"inside" from "outside" would mean resolving the link, and whatever the link names can change
between that check and the open.

The host and the guest check with the same code: the worker's file ops, the native provider's
read-only workspace and the ``{"$file"}`` payloads all open through ``open_beneath``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from warden.errors import PathEscapeError

__all__ = ["check_relative", "open_beneath", "open_dir_beneath"]

PATH_MAX = 4096

# openat2(2): linux/openat2.h. The syscall number is the same on every architecture (numbers
# from 424 on were allocated once for all of them).
_SYS_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def check_relative(path: object, *, canonical: bool = False) -> str:
    """A workspace-relative path with no way out, lexically, in its normal form ("." for the
    root). ``canonical``: the path must already be in that form, with no empty or "."
    component (paths warden writes itself, such as ``{"$file"}`` references)."""
    if not isinstance(path, str) or "\0" in path:
        raise PathEscapeError(f"path must be a string without NUL bytes, got {path!r}", path=None)
    if len(path) > PATH_MAX:
        raise PathEscapeError(f"path of {len(path)} characters is longer than {PATH_MAX}",
                              path=None)
    if path.startswith("/"):
        raise PathEscapeError(f"path {path!r} is absolute; give a path relative to the workspace",
                              path=path)
    raw = path.split("/")
    if ".." in raw:
        raise PathEscapeError(f"path {path!r} climbs out of the workspace with '..'", path=path)
    parts = [p for p in raw if p not in ("", ".")]
    if canonical and (not path or len(parts) != len(raw)):
        raise PathEscapeError(f"path {path!r} has an empty or '.' component; give a plain "
                              "relative path such as 'dir/file'", path=path)
    return "/".join(parts) or "."


def open_beneath(root: str | os.PathLike[str] | int, path: str, flags: int, mode: int = 0o644) -> int:
    """Open ``path`` (relative) beneath ``root`` (a directory path or descriptor) and return
    the new descriptor. No symbolic link is followed on the way, the last component included:
    one there raises PathEscapeError naming ``path``. Other failures raise OSError with
    ``filename`` = ``path`` as given, never a host path or a descriptor number.

    ``flags`` are open(2) flags; O_NOFOLLOW and O_CLOEXEC are always added."""
    rel = check_relative(path)
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    own = not isinstance(root, int)
    rootfd = root if isinstance(root, int) else os.open(root, _DIR_FLAGS)
    try:
        try:
            fd = _openat2(rootfd, rel, flags, mode)
        except _Unavailable:
            fd = _walk(rootfd, rel, flags, mode)
    except OSError as exc:
        raise _refusal(exc, rootfd, path) from None
    finally:
        if own:
            os.close(rootfd)
    return fd


def open_dir_beneath(root: str | os.PathLike[str] | int, path: str, *, create: bool = False) -> int:
    """A descriptor of the directory ``path`` beneath ``root``, by the same rule;
    ``create``: make the missing directories on the way (0o755), each beneath the last."""
    if not create:
        return open_beneath(root, path, os.O_RDONLY | os.O_DIRECTORY)
    rel = check_relative(path)
    dirfd = open_beneath(root, ".", os.O_RDONLY | os.O_DIRECTORY)
    done: list[str] = []
    try:
        for part in ([] if rel == "." else rel.split("/")):
            done.append(part)
            try:
                os.mkdir(part, 0o755, dir_fd=dirfd)
            except FileExistsError:
                pass  # a directory, or whatever else the open below refuses
            nxt = open_beneath(dirfd, part, os.O_RDONLY | os.O_DIRECTORY)
            os.close(dirfd)
            dirfd = nxt
    except PathEscapeError:
        os.close(dirfd)
        raise PathEscapeError(f"path {path!r}: {'/'.join(done)!r} is a symbolic link; links are "
                              "not followed in a sandbox's workspace, give the path of a real "
                              "directory", path=path) from None
    except OSError as exc:
        os.close(dirfd)
        code = exc.errno or errno.EIO
        raise OSError(code, os.strerror(code), path) from None
    return dirfd


class _Unavailable(Exception):
    """openat2 cannot be used here: the walk does the same, one component at a time."""


# (dirfd, path, flags, mode) -> (fd or -1, errno); bound on first use.
_Openat2 = Callable[[int, str, int, int], tuple[int, int]]
_openat2_call: _Openat2 | None = None
_openat2_usable: bool | None = None  # None until probed


def _bind_openat2() -> _Openat2:
    """openat2 through libc's syscall(2): Python has no binding of its own."""
    import ctypes

    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                    ("resolve", ctypes.c_uint64)]

    def call(dirfd: int, rel: str, flags: int, mode: int) -> tuple[int, int]:
        how = OpenHow(flags, mode, _RESOLVE)
        got = fn(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd),
                 ctypes.c_char_p(os.fsencode(rel)), ctypes.byref(how),
                 ctypes.c_size_t(ctypes.sizeof(how)))
        return (int(got), 0) if got >= 0 else (-1, ctypes.get_errno())

    return call


def _probe(dirfd: int) -> bool:
    """Whether openat2 works here: not on kernels before 5.6, nor under a seccomp filter
    that refuses it (ENOSYS or EPERM for a plain open of the root itself)."""
    global _openat2_call
    try:
        call = _openat2_call = _bind_openat2()
    except (ImportError, OSError, AttributeError):
        return False
    fd, err = call(dirfd, ".", _DIR_FLAGS, 0)
    if fd >= 0:
        os.close(fd)
        return True
    return err not in (errno.ENOSYS, errno.EPERM)


def _openat2(dirfd: int, rel: str, flags: int, mode: int) -> int:
    global _openat2_usable
    if _openat2_usable is None:
        _openat2_usable = _probe(dirfd)
    if not _openat2_usable or _openat2_call is None:
        raise _Unavailable
    # mode must be 0 unless the open may create: openat2 refuses anything else with EINVAL.
    tmpfile = getattr(os, "O_TMPFILE", 0)
    creates = flags & os.O_CREAT or (tmpfile and flags & tmpfile == tmpfile)
    fd, err = _openat2_call(dirfd, rel, flags, mode if creates else 0)
    if fd >= 0:
        return fd
    if err == errno.EAGAIN:
        # A RESOLVE_* lookup that raced with a rename may be asked to retry: the walk does.
        raise _Unavailable
    raise OSError(err, os.strerror(err))


def _walk(rootfd: int, rel: str, flags: int, mode: int) -> int:
    """What openat2 does, one component at a time: every directory on the way opened with
    O_NOFOLLOW beneath the last, so that a component swapped for a link meanwhile fails its
    own open instead of being followed."""
    parts = rel.split("/")
    dirfd = rootfd
    try:
        for part in parts[:-1]:
            nxt = _open_component(dirfd, part, _DIR_FLAGS | os.O_NOFOLLOW)
            if dirfd != rootfd:
                os.close(dirfd)
            dirfd = nxt
        return _open_component(dirfd, parts[-1], flags, mode)
    finally:
        if dirfd != rootfd:
            os.close(dirfd)


def _open_component(dirfd: int, name: str, flags: int, mode: int = 0) -> int:
    try:
        return os.open(name, flags, mode, dir_fd=dirfd)
    except NotADirectoryError:
        # O_DIRECTORY|O_NOFOLLOW on a link fails with ENOTDIR, not ELOOP: tell them apart.
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except OSError:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        if stat.S_ISLNK(st.st_mode) or (flags & os.O_DIRECTORY and stat.S_ISDIR(st.st_mode)):
            # A link, or a directory now that was none when opened: swapped meanwhile.
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
        raise


def _refusal(exc: OSError, rootfd: int, path: str) -> Exception:
    """The error for a failed open of ``path``: a link on the way or a way out is a
    PathEscapeError, anything else the OSError with ``path`` as its filename."""
    code = exc.errno or errno.EIO
    if code not in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):
        return OSError(code, os.strerror(code), path)
    link = _first_link(rootfd, path)
    # O_DIRECTORY on a link fails with ENOTDIR rather than ELOOP: a link found on the path
    # then is the reason.
    if code != errno.ENOTDIR or link:
        where = f": {link!r} is a symbolic link" if link else " through a symbolic link"
        return PathEscapeError(f"path {path!r} leads{where}; links are not followed in a "
                               "sandbox's workspace, give the path of the file itself",
                               path=path)
    return OSError(code, os.strerror(code), path)


def _first_link(rootfd: int, path: str) -> str | None:
    """The first component of ``path`` that is a link now, for the message only (it may have
    changed since the open failed; nothing is opened through it)."""
    parts = check_relative(path).split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        try:
            st = os.stat(prefix, dir_fd=rootfd, follow_symlinks=False)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return prefix
    return None
