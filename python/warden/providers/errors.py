"""What an error from inside a sandbox means for its caller: the one mapping, shared by every
provider, from the fields of an error reply (warden.wire.replies) to warden's errors.

Decided by fields, never by message text:

==========================================  ===============================================
errno ENOSPC (the code's OSError, or a      DiskQuotaExceeded: the sandbox filled its disk
file op's)                                  quota
errno EAGAIN, or resource "thread", and     PidsLimitExceeded: a fork or thread refused at
the sandbox's cgroup saw its pids limit     the pids limit
a file op's other errno                     the SandboxFileError for it, naming the path the
                                            caller gave and the sandbox
anything else the code raised               PluginError, said to come from code in the
                                            sandbox
==========================================  ===============================================

The worker's refusals of frames and paths (PayloadTooLarge, ProtocolError, PathEscapeError)
are the protocol's own and arrive as such from warden.wire.replies.error_from_reply.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from warden.errors import (
    DiskQuotaExceeded,
    PidsLimitExceeded,
    PluginError,
    SandboxFileError,
    sandbox_file_error,
)
from warden.providers.base import SandboxHandle
from warden.wire import ops

__all__ = ["FILE_VERBS", "sandbox_error"]

FILE_VERBS = {ops.READ_FILE: "read", ops.WRITE_FILE: "write", ops.LIST_FILES: "list",
              ops.REMOVE_FILE: "remove", ops.EXEC: "run a command in",
              ops.PROC_START: "start a process in", ops.FILE_STAT: "stat",
              ops.FILE_MKDIR: "make directory", ops.FILE_RENAME: "rename",
              ops.FILE_ENTRIES: "list", ops.FILE_WRITE_CHUNK: "write",
              ops.FILE_READ_CHUNK: "read"}


def sandbox_error(exc: Exception, handle: SandboxHandle, op: str, *, path: str | None = None,
                  pids_limit_hit: Callable[[], bool] | None = None) -> Exception:
    """The error the caller of ``op`` on ``handle`` sees for ``exc``: what the worker's
    error reply became (``error_from_reply``), or a file operation's SandboxFileError.

    ``path``: the path the caller gave a file op (it replaces whatever path the worker
    reported). ``pids_limit_hit``: asks the sandbox's cgroup whether its pids limit was
    reached; None when the provider cannot tell (then no PidsLimitExceeded). A
    DiskQuotaExceeded or PidsLimitExceeded has ``exc`` as its ``__cause__``; raise the result
    ``from`` its ``__cause__``."""
    if isinstance(exc, SandboxFileError):
        filename = path if path is not None else exc.filename
        if exc.errno == errno.ENOSPC:
            return _caused(_disk_full(handle, f"{FILE_VERBS.get(op, op)} of {filename!r}"), exc)
        return sandbox_file_error(exc.errno or errno.EIO, filename, op=FILE_VERBS.get(op, ""),
                                  sandbox=handle.id)
    if not isinstance(exc, PluginError):
        return exc
    said = f"{exc.type}: {exc.message}"
    if exc.errno == errno.ENOSPC:
        return _caused(_disk_full(handle, said), exc)
    if (exc.errno == errno.EAGAIN or exc.resource == "thread") and pids_limit_hit is not None \
            and pids_limit_hit():
        return _caused(PidsLimitExceeded(
            f"sandbox {handle.id} reached its pids limit of {handle.spec.limits.pids} processes "
            f"and threads ({said}); raise the limit (Limits.pids, max_pids in plugin.yaml) if "
            "the code needs more"), exc)
    return PluginError(exc.type, exc.message, exc.traceback, errno=exc.errno, path=exc.path,
                       resource=exc.resource, where=f"code in sandbox {handle.id}")


def _disk_full(handle: SandboxHandle, what: str) -> DiskQuotaExceeded:
    return DiskQuotaExceeded(
        f"sandbox {handle.id} filled its disk quota of {handle.spec.limits.disk_mb} MiB "
        f"({what}); further writes fail until files are removed, or raise the quota "
        "(Limits.disk_mb, max_disk_mb in plugin.yaml)")


def _caused(err: Exception, cause: Exception) -> Exception:
    err.__cause__ = cause
    return err
