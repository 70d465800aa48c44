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
    ├── PathEscapeError          a sandbox path would leave the workspace
    ├── PayloadTooLarge          an IPC frame over the cap (.size, .limit)
    ├── ProtocolError            a peer sent bytes that are not a valid frame
    ├── RateLimitExceeded        the caller is over its rate limit (.retry_after)
    └── CallFailed               a call into a sandbox did not return a result
        ├── TimeoutExceeded      the wall deadline passed; the worker was killed
        ├── MemoryLimitExceeded  the worker was OOM-killed (confirmed from the cgroup)
        ├── DiskQuotaExceeded    the sandbox filled its disk quota
        ├── PidsLimitExceeded    a fork or new thread failed at the sandbox's pids limit
        ├── WorkerCrashed        the worker died (.signal, .exit_code)
        └── PluginError          the code inside raised (.type, .message, .traceback)

Every message says what happened, to what, and what to do about it.
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
    "ProtocolError",
    "ProviderUnavailable",
    "RateLimitExceeded",
    "SandboxSetupError",
    "ScanRejected",
    "TimeoutExceeded",
    "WardenError",
    "WorkerCrashed",
]

import errno as _errno
import os as _os
import reprlib as _reprlib


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

    def __init__(self, findings: list, where: str = "") -> None:
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
        super().__init__(f"{where}manifest field {field!r} has value {value!r}; allowed: {allowed}")


class PathEscapeError(WardenError):
    """A path given for a sandbox's files would resolve outside its workspace."""


class PayloadTooLarge(WardenError):
    """A frame was larger than the cap of the side that refused it."""

    def __init__(self, size: int, limit: int, what: str = "frame") -> None:
        self.size = size
        self.limit = limit
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
    """The code inside the sandbox raised an exception."""

    def __init__(self, type: str, message: str, traceback: str = "") -> None:
        self.type = type
        self.message = message
        self.traceback = traceback
        super().__init__(f"{type}: {message}")
