"""The one exception tree of warden.

::

    WardenError
    ├── InvalidArgument          a caller's argument is not allowed (.argument, .value, .allowed);
    │                            also a ValueError; raised before anything runs
    ├── SandboxSetupError        a set-up step failed in the child or parent (.step, .errno)
    ├── CgroupTeardownError      a sandbox's cgroup could not be emptied or removed (.path)
    ├── ProviderUnavailable      this host cannot give what was asked (.missing)
    ├── HostResourceExhausted    the host ran out of something while making a sandbox, e.g. file
    │                            descriptors (.resource, .limit, .step); nothing was left behind
    ├── ScanRejected             the scanner refused source (.findings)
    ├── ManifestError            plugin.yaml is invalid (.field, .value, .allowed)
    ├── PathEscapeError          a sandbox path would leave its area, or passes a link (.path)
    ├── SandboxFileError         a file operation on a sandbox's workspace failed; also the
    │   │                        matching OSError (.errno, .strerror, .filename: the path as
    │   │                        the caller gave it, .op, .sandbox)
    │   ├── SandboxFileNotFound      also FileNotFoundError (ENOENT)
    │   ├── SandboxFileExists        also FileExistsError (EEXIST)
    │   ├── SandboxIsADirectory      also IsADirectoryError (EISDIR)
    │   ├── SandboxNotADirectory     also NotADirectoryError (ENOTDIR)
    │   └── SandboxPermissionError   also PermissionError (EACCES, EPERM)
    ├── ProcessNotFound          no process of that pid was started through warden in the
    │                            sandbox, or it was forgotten; also ProcessLookupError (.pid)
    ├── ProcessStdinClosed       a write to a background process whose stdin is closed;
    │                            also BrokenPipeError (.pid)
    ├── WatchLimitExceeded       a watch needs more inotify instances or watches than a limit
    │                            allows (.limit, .path, .watched); nothing is left watching
    ├── PayloadTooLarge          a frame or payload over a cap (.size, .limit, .direction)
    ├── ProtocolError            a peer sent bytes that are not a valid frame
    ├── RateLimitExceeded        the caller is over its rate limit (.retry_after)
    ├── SandboxPaused            a request to a paused sandbox; nothing was sent (.sandbox)
    ├── SandboxExpired           the sandbox closed itself at its ttl or idle timeout
    │                            (.sandbox, .reason: "ttl" or "idle", .after_s)
    └── CallFailed               a call into a sandbox did not return a result
        ├── TimeoutExceeded      the wall deadline passed; the worker was killed
        ├── MemoryLimitExceeded  the worker was OOM-killed (confirmed from the cgroup)
        ├── DiskQuotaExceeded    the sandbox filled its disk quota
        ├── PidsLimitExceeded    a fork or new thread failed at the sandbox's pids limit
        ├── WorkerCrashed        the worker died (.signal, .exit_code)
        └── PluginError          the code inside raised (.type, .message, .traceback,
                                 .errno and .path when it was an OSError, .resource)

Every message says what happened, to what, and what to do about it. Errors cross the worker
protocol as fields (kind, origin, errno, path, limit, size), never as text to be matched:
warden.wire.replies carries them, warden.providers.errors gives them their meaning.
"""

from __future__ import annotations

__all__ = [
    "CallFailed",
    "CgroupTeardownError",
    "DiskQuotaExceeded",
    "HostResourceExhausted",
    "InvalidArgument",
    "ManifestError",
    "MemoryLimitExceeded",
    "PathEscapeError",
    "PayloadTooLarge",
    "PidsLimitExceeded",
    "PluginError",
    "ProcessNotFound",
    "ProcessStdinClosed",
    "ProtocolError",
    "ProviderUnavailable",
    "RateLimitExceeded",
    "SandboxFileError",
    "SandboxFileExists",
    "SandboxFileNotFound",
    "SandboxIsADirectory",
    "SandboxNotADirectory",
    "SandboxPermissionError",
    "SandboxExpired",
    "SandboxPaused",
    "SandboxSetupError",
    "ScanRejected",
    "TimeoutExceeded",
    "WardenError",
    "WatchLimitExceeded",
    "WorkerCrashed",
    "sandbox_file_error",
]

import errno as _errno
import os as _os
import reprlib as _reprlib
from typing import Any


class WardenError(Exception):
    """Base class of every error warden raises."""


# reprlib: an argument nested a thousand deep, or holding itself, is still shown, its top.
_REPR = _reprlib.Repr()
_REPR.maxlevel = 4
_REPR.maxstring = _REPR.maxother = 76


def _show(value: object, limit: int = 80) -> str:
    """A value for a message, cut short: an argument can be huge, and it is the caller's own."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InvalidArgument(WardenError, ValueError):
    """A caller passed an argument warden does not accept; nothing was run."""

    def __init__(self, argument: str, value: object, allowed: str) -> None:
        self.argument = argument
        self.value = value
        self.allowed = allowed
        super().__init__(f"{argument}={_show(value)} is not allowed: {allowed}")


class SandboxSetupError(WardenError):
    """A step of sandbox set-up failed; nothing ran."""

    def __init__(self, step: str, errno: int, detail: str = "") -> None:
        self.step = step
        self.errno = errno
        self.detail = detail
        name = _errno.errorcode.get(errno, str(errno))
        msg = f"sandbox set-up failed at step {step!r}: {name} ({_os.strerror(errno)})"
        if detail:
            msg += f": {detail}"
        msg += "; nothing was run (run `warden doctor` to see what this host supports)"
        super().__init__(msg)


class CgroupTeardownError(WardenError):
    """A sandbox's cgroup could not be emptied or removed at teardown."""

    def __init__(self, path: str, errno: int, detail: str = "") -> None:
        self.path = path
        self.errno = errno
        name = _errno.errorcode.get(errno, str(errno))
        msg = f"could not tear down cgroup {path}: {name} ({_os.strerror(errno)})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class ProviderUnavailable(WardenError):
    """The host cannot provide an isolation feature that was asked for."""

    def __init__(self, missing: str, hint: str = "") -> None:
        self.missing = missing
        msg = f"this host cannot provide {missing}"
        if hint:
            msg += f": {hint}"
        super().__init__(msg)


class HostResourceExhausted(WardenError):
    """The host ran out of a resource while a sandbox was being made (file descriptors of this
    process or of the whole system); every part made for it was released."""

    def __init__(self, resource: str, limit: int | None, step: str, hint: str) -> None:
        self.resource = resource  # "RLIMIT_NOFILE" (this process) or "fs.file-max" (the host)
        self.limit = limit
        self.step = step
        shown = f" (limit {limit})" if limit is not None else ""
        super().__init__(f"ran out of {resource}{shown} at step {step!r} of making a sandbox; "
                         f"nothing of it was left behind; {hint}")


class ScanRejected(WardenError):
    """The scanner refused source code before it ran."""

    def __init__(self, findings: list[Any], where: str = "") -> None:
        self.findings = list(findings)
        head = "; ".join(
            f"{getattr(f, 'filename', where) or where}:{f.line}:{f.col} {f.rule}: {f.message}"
            for f in self.findings[:5]
        )
        more = f" (and {len(self.findings) - 5} more)" if len(self.findings) > 5 else ""
        super().__init__(f"scanner refused {where or 'source'}: {head}{more}")


class ManifestError(WardenError):
    """plugin.yaml is missing, unreadable or invalid."""

    def __init__(self, field: str, value: object, allowed: str, path: str = "") -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        where = f"{path}: " if path else ""
        # A string (a path, a name) is shown whole; anything else cut short: a value built
        # from YAML aliases can be exponentially large when spelled out.
        shown = repr(value) if isinstance(value, str) else _show(value, 200)
        super().__init__(f"{where}manifest field {field!r} has value {shown}; allowed: {allowed}")


class PathEscapeError(WardenError):
    """A path given for a sandbox's files would resolve outside its area, or passes through a
    symbolic link (none is followed). ``path``: the path as the caller gave it, when it is a
    string."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class SandboxFileError(WardenError, OSError):
    """A file operation (read, write, list, remove) on a sandbox's workspace failed.

    Also an OSError with ``errno`` and ``strerror``; ``filename`` is the workspace-relative
    path the caller gave, never a host path or a descriptor number. Made by
    :func:`sandbox_file_error`, which picks the subclass for the errno."""

    def __init__(self, errno: int, strerror: str | None = None, filename: str | None = None,
                 *, op: str = "", sandbox: str = "") -> None:
        super().__init__(errno, strerror or _os.strerror(errno), filename)
        self.op = op
        self.sandbox = sandbox

    def __str__(self) -> str:
        verb = f"cannot {self.op}" if self.op else "file operation failed on"
        where = f" in sandbox {self.sandbox}" if self.sandbox else " in the sandbox's workspace"
        code = self.errno if self.errno is not None else 0
        name = _errno.errorcode.get(code, str(code))
        hint = _FILE_HINTS.get(code, "")
        return (f"{verb} {self.filename!r}{where}: {self.strerror} ({name})"
                + (f"; {hint}" if hint else ""))


class SandboxFileNotFound(SandboxFileError, FileNotFoundError):
    """No such file or directory in the workspace (ENOENT)."""


class SandboxFileExists(SandboxFileError, FileExistsError):
    """The path already exists in the workspace (EEXIST)."""


class SandboxIsADirectory(SandboxFileError, IsADirectoryError):
    """The path names a directory where a file was needed (EISDIR)."""


class SandboxNotADirectory(SandboxFileError, NotADirectoryError):
    """A component of the path is not a directory (ENOTDIR)."""


class SandboxPermissionError(SandboxFileError, PermissionError):
    """The sandbox's user may not do that to the path (EACCES, EPERM)."""


_FILE_ERRORS: dict[int, type[SandboxFileError]] = {
    _errno.ENOENT: SandboxFileNotFound,
    _errno.EEXIST: SandboxFileExists,
    _errno.EISDIR: SandboxIsADirectory,
    _errno.ENOTDIR: SandboxNotADirectory,
    _errno.EACCES: SandboxPermissionError,
    _errno.EPERM: SandboxPermissionError,
}

_FILE_HINTS = {
    _errno.ENOENT: "check the path against files.list()",
    _errno.EEXIST: "remove it first, or choose another path",
    _errno.EISDIR: "give the path of a file, or list the directory",
    _errno.ENOTDIR: "a component of the path is a file, not a directory",
    _errno.EACCES: "the sandbox's user may not do that there",
    _errno.EPERM: "the sandbox's user may not do that there",
    _errno.EROFS: "the workspace is read-only to the code inside; write it with files.write",
}


def sandbox_file_error(errno: int, filename: str | None, *, op: str = "",
                       sandbox: str = "") -> SandboxFileError:
    """The SandboxFileError subclass for ``errno``; its strerror is this host's text for the
    errno (never text that came from inside a sandbox)."""
    cls = _FILE_ERRORS.get(errno, SandboxFileError)
    return cls(errno, _os.strerror(errno), filename, op=op, sandbox=sandbox)


PAYLOAD_DIRECTIONS = ("outgoing", "incoming", "reply")


class ProcessNotFound(WardenError, ProcessLookupError):
    """No process ``pid`` was started through warden in the sandbox (Sandbox.spawn), or it
    ended so long ago that the sandbox forgot it."""

    def __init__(self, pid: int, sandbox: str) -> None:
        self.pid = pid
        super().__init__(f"no process {pid} was started through warden in sandbox {sandbox}, "
                         "or it ended long ago; list them with Sandbox.processes()")


class ProcessStdinClosed(WardenError, BrokenPipeError):
    """A write to the stdin of a background process that has closed it, was started with
    ``stdin=False``, or has ended."""

    def __init__(self, pid: int, sandbox: str) -> None:
        self.pid = pid
        super().__init__(f"the stdin of process {pid} in sandbox {sandbox} is closed (it "
                         "ended, closed it, or was started with stdin=False)")


class WatchLimitExceeded(WardenError):
    """A watch (Sandbox.watch) needs more than a limit allows: the kernel's inotify limits
    of the sandbox's user (``max_user_instances``, ``max_user_watches``: sysctl
    fs.inotify.*, and user.max_inotify_* of its user namespace) or warden's own
    ``max_watches`` directories of one watch. The watch was stopped, never left partial."""

    def __init__(self, limit: str, path: str, sandbox: str, watched: int) -> None:
        self.limit = limit
        self.path = path
        self.watched = watched
        super().__init__(f"watching {path!r} in sandbox {sandbox} reached the inotify limit "
                         f"{limit} after {watched} directories; the watch was stopped. Watch "
                         "a smaller tree (recursive=False, a subdirectory) or raise the limit")


class PayloadTooLarge(WardenError):
    """A frame or payload was larger than the cap of the side that refused it.

    ``direction`` says which: "outgoing", this side's frame refused before a byte was sent;
    "incoming", a frame or payload this side received over its cap (skipped); "reply", the
    peer refused a frame and said so in its reply (the request over its receive cap, or its
    reply over its send cap)."""

    def __init__(self, size: int, limit: int, what: str = "frame", *,
                 direction: str = "incoming") -> None:
        if direction not in PAYLOAD_DIRECTIONS:
            raise ValueError(f"direction must be one of {PAYLOAD_DIRECTIONS}, got {direction!r}")
        self.size = size
        self.limit = limit
        self.direction = direction
        super().__init__(
            f"{what} of {size} bytes is over the cap of {limit} bytes; pass large payloads "
            "as a file in the sandbox's data area, or raise the cap"
        )


class ProtocolError(WardenError):
    """A peer sent bytes that do not decode as a warden frame."""


class RateLimitExceeded(WardenError):
    """A caller went over its rate limit; the call was not made."""

    def __init__(self, key: str, retry_after: float) -> None:
        self.key = key
        self.retry_after = retry_after
        super().__init__(f"rate limit for {key} exceeded; retry in {retry_after:.3f}s")


class SandboxPaused(WardenError):
    """A request to a sandbox that is paused (Sandbox.pause): its processes are frozen, so
    the request was refused before anything was sent, rather than waiting on them."""

    def __init__(self, sandbox: str, what: str = "a request") -> None:
        self.sandbox = sandbox
        super().__init__(f"{what} to sandbox {sandbox} was refused: the sandbox is paused "
                         "(every process in it is frozen); call resume() first")


LIFETIME_REASONS = ("ttl", "idle")


class SandboxExpired(WardenError):
    """The sandbox closed itself: it reached its ``ttl_s``, or was idle for its
    ``idle_timeout_s``; everything in it was killed."""

    def __init__(self, sandbox: str, reason: str, after_s: float) -> None:
        if reason not in LIFETIME_REASONS:
            raise ValueError(f"reason must be one of {LIFETIME_REASONS}, got {reason!r}")
        self.sandbox = sandbox
        self.reason = reason
        self.after_s = after_s
        why = (f"reached its ttl of {after_s:g}s" if reason == "ttl"
               else f"was idle for its idle_timeout_s of {after_s:g}s")
        super().__init__(f"sandbox {sandbox} {why} and was closed with everything in it; "
                         "create a new one (and raise ttl_s/idle_timeout_s if it was too short)")


class CallFailed(WardenError):
    """A call into a sandbox did not produce a result."""


class TimeoutExceeded(CallFailed):
    """The wall deadline passed; the worker and everything in its sandbox were killed."""


class MemoryLimitExceeded(CallFailed):
    """The kernel OOM-killed the sandbox at its memory limit."""


class DiskQuotaExceeded(CallFailed):
    """The sandbox filled its disk quota; further writes fail with ENOSPC."""


class PidsLimitExceeded(CallFailed):
    """The code inside failed to fork or start a thread (EAGAIN) because its sandbox reached
    its pids limit (confirmed from the cgroup); the worker is replaced."""


class WorkerCrashed(CallFailed):
    """The worker died without answering."""

    def __init__(self, message: str, *, signal: int | None = None, exit_code: int | None = None):
        self.signal = signal
        self.exit_code = exit_code
        super().__init__(message)


class PluginError(CallFailed):
    """The code inside the sandbox raised an exception: a plugin's, or code given to
    ``Sandbox.call``.

    ``type``, ``message`` and ``traceback`` are the exception's own; ``errno`` and ``path``
    its errno and filename when it was an OSError; ``resource`` is "thread" when the code
    failed to start a thread; ``where`` says whose code it was (e.g. "code in sandbox
    native-12-3") and heads the message."""

    def __init__(self, type: str, message: str, traceback: str = "", *,
                 errno: int | None = None, path: str | None = None,
                 resource: str | None = None, where: str = "") -> None:
        self.type = type
        self.message = message
        self.traceback = traceback
        self.errno = errno
        self.path = path
        self.resource = resource
        self.where = where
        super().__init__(f"{where} raised {type}: {message}" if where else f"{type}: {message}")
