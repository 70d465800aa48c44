"""Replies of the worker protocol, and errors as fields.

A reply is ``{"id", "ok": True, "result"}`` or ``{"id", "ok": False, "error": {...}}``. The
error map carries what the host needs to decide what happened without reading prose:

=============  ===========================================================================
kind           the exception's type name, or the warden error class's when warden refused
origin         "plugin" (code the sandbox was given raised), "warden" (the worker itself
               refused: a frame, a path, a file operation), "zygote" (warden's zygote)
message        the exception's text, for people only: nothing matches on it
traceback      its formatted traceback ("" when warden refused)
errno          int, from an OSError; else None
path           str: an OSError's filename, or the workspace-relative path an op was given;
               never a host path; else None
limit, size    ints, for PayloadTooLarge; else None
direction      PayloadTooLarge's direction as the worker saw it ("outgoing": its reply was
               over its send cap; "incoming": the request was over its receive cap)
resource       "thread" when code failed to start a thread (the RuntimeError of
               threading.Thread.start, which has no errno); else None
=============  ===========================================================================

``error_from_reply`` gives the errors the protocol itself defines (a refused frame, a
refused path, a failed file operation); everything else is a PluginError carrying the
fields, and warden.providers.errors decides what it means for a sandbox (a full disk, the
pids limit).
"""

from __future__ import annotations

import threading
import traceback as _traceback
from dataclasses import dataclass
from typing import Any

from warden.errors import (
    PathEscapeError,
    PayloadTooLarge,
    PluginError,
    ProtocolError,
    SandboxFileError,
    WardenError,
    sandbox_file_error,
)

__all__ = ["EXEC_ENVELOPE", "ErrorFields", "ExecReply", "error_fields", "error_from_reply",
           "error_reply", "exec_output_cap", "ok_reply", "parse_bytes", "parse_entries",
           "parse_error", "parse_exec"]

# Bounds on what a hostile worker can make the host keep: a message or traceback longer than
# this is cut, a name or path longer is refused.
_MAX_TEXT = 64 << 10
_MAX_NAME = 200
_MAX_PATH = 4096
_ORIGINS = ("plugin", "warden", "zygote")
_FILE_KINDS = frozenset([SandboxFileError.__name__,
                         *(cls.__name__ for cls in SandboxFileError.__subclasses__())])


def ok_reply(request_id: int | None, result: object) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "result": result}


_thread_start_lines: frozenset[int] | None = None


def _lines_starting_threads() -> frozenset[int]:
    """The lines of Thread.start that call the primitive starting the OS thread (its name
    differs between Python versions)."""
    import dis

    code = threading.Thread.start.__code__
    lines, line = set(), code.co_firstlineno
    for ins in dis.get_instructions(code):
        pos = getattr(ins, "positions", None)
        if pos is not None and pos.lineno is not None:
            line = pos.lineno
        elif type(ins.starts_line) is int:
            line = ins.starts_line
        if ins.argval in ("_start_new_thread", "_start_joinable_thread"):
            lines.add(line)
    return frozenset(lines)


def _thread_start_failed(exc: BaseException) -> bool:
    """Whether ``exc`` came out of Thread.start's call that starts the OS thread: CPython
    then raises a RuntimeError without an errno, and this is how the worker knows it."""
    global _thread_start_lines
    if not isinstance(exc, RuntimeError):
        return False
    if _thread_start_lines is None:
        _thread_start_lines = _lines_starting_threads()
    start = threading.Thread.start.__code__
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is start and tb.tb_lineno in _thread_start_lines:
            return True
        tb = tb.tb_next
    return False


def error_fields(exc: BaseException, *, origin: str) -> dict[str, Any]:
    """The error map of a reply for ``exc`` (see the module's table)."""
    if isinstance(exc, PluginError):
        # The worker's own report of a plugin that did not load: its fields as they are.
        kind, message, tb = exc.type, exc.message, exc.traceback
    else:
        kind = type(exc).__name__
        message = str(exc)
        tb = "" if origin == "warden" else "".join(
            _traceback.format_exception(type(exc), exc, exc.__traceback__))
    fields: dict[str, Any] = {
        "kind": kind, "origin": origin, "message": message, "traceback": tb, "errno": None,
        "path": None, "limit": None, "size": None, "direction": None, "resource": None}
    if isinstance(exc, OSError):
        if isinstance(exc.errno, int):
            fields["errno"] = exc.errno
        if isinstance(exc.filename, str):
            fields["path"] = exc.filename
    elif isinstance(exc, PathEscapeError):
        fields["path"] = exc.path
    elif isinstance(exc, PluginError):
        fields.update(errno=exc.errno, path=exc.path, resource=exc.resource)
    elif isinstance(exc, PayloadTooLarge):
        fields.update(size=exc.size, limit=exc.limit, direction=exc.direction)
    elif _thread_start_failed(exc):
        fields["resource"] = "thread"
    return fields


def error_reply(request_id: int | None, exc: BaseException, *, origin: str | None = None
                ) -> dict[str, Any]:
    """The reply for a request that raised ``exc``. ``origin`` defaults to "warden" for a
    WardenError the worker raised (a refused frame or path, a failed file op) and "plugin"
    for anything else, or for the PluginError of a plugin that did not load."""
    if origin is None:
        origin = "warden" if isinstance(exc, WardenError) and not isinstance(
            exc, PluginError) else "plugin"
    return {"id": request_id, "ok": False, "error": error_fields(exc, origin=origin)}


@dataclass(frozen=True)
class ErrorFields:
    """An error map checked field by field (``parse_error``)."""

    kind: str
    origin: str
    message: str
    traceback: str
    errno: int | None = None
    path: str | None = None
    limit: int | None = None
    size: int | None = None
    direction: str | None = None
    resource: str | None = None


def _text(error: dict[Any, Any], key: str, bound: int, cut: bool) -> str:
    value = error.get(key, "")
    if not isinstance(value, str):
        raise ProtocolError(f"reply error field {key!r} is a {type(value).__name__}, not a "
                            "string; the worker is broken or hostile")
    if len(value) > bound:
        if not cut:
            raise ProtocolError(f"reply error field {key!r} is {len(value)} characters long, "
                                f"over {bound}; the worker is broken or hostile")
        value = value[:bound] + "... (cut)"
    return value


def _optional(error: dict[Any, Any], key: str, kind: type[int] | type[str]) -> Any:
    value = error.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProtocolError(f"reply error field {key!r} is a {type(value).__name__}, not a "
                            f"{kind.__name__} or nil; the worker is broken or hostile")
    if isinstance(value, str) and len(value) > _MAX_PATH:
        raise ProtocolError(f"reply error field {key!r} is {len(value)} characters long; the "
                            "worker is broken or hostile")
    return value


def parse_error(error: object) -> ErrorFields:
    """Check the "error" of a reply; ProtocolError when it is not an error map."""
    if not isinstance(error, dict):
        raise ProtocolError(f"reply error is a {type(error).__name__}, not a map; the worker "
                            "is broken or hostile")
    origin = error.get("origin")
    if origin not in _ORIGINS:
        raise ProtocolError(f"reply error has origin {str(origin)[:40]!r}, not one of "
                            f"{_ORIGINS}; the worker is broken or hostile")
    kind = _text(error, "kind", _MAX_NAME, cut=False)
    if not kind:
        raise ProtocolError("reply error has no kind; the worker is broken or hostile")
    return ErrorFields(
        kind=kind, origin=origin, message=_text(error, "message", _MAX_TEXT, cut=True),
        traceback=_text(error, "traceback", _MAX_TEXT, cut=True),
        errno=_optional(error, "errno", int), path=_optional(error, "path", str),
        limit=_optional(error, "limit", int), size=_optional(error, "size", int),
        direction=_optional(error, "direction", str),
        resource=_optional(error, "resource", str))


def error_from_reply(error: object) -> Exception:
    """The exception for the "error" of a reply. The worker's refusals that the protocol
    defines become their warden errors, with messages made here from the fields (nothing the
    worker wrote is quoted but a protocol refusal's reason); any other error is a PluginError
    carrying the fields."""
    try:
        f = parse_error(error)
    except ProtocolError as exc:
        return exc
    if f.origin == "warden":
        if f.kind == "PayloadTooLarge" and f.size is not None and f.limit is not None:
            what = ("the reply, refused by the worker's send cap," if f.direction == "outgoing"
                    else "the request, refused by the worker's receive cap,")
            return PayloadTooLarge(f.size, f.limit, what=what, direction="reply")
        if f.kind == "ProtocolError":
            return ProtocolError(f"the worker refused the request: {f.message}")
        if f.kind == "PathEscapeError":
            shown = f"path {f.path!r}" if f.path is not None else "a path"
            return PathEscapeError(f"{shown} leads out of the sandbox's area or through a "
                                   "symbolic link; links are not followed there, give the path "
                                   "of the file itself", path=f.path)
        if f.kind in _FILE_KINDS and f.errno is not None:
            return sandbox_file_error(f.errno, f.path)
    return PluginError(f.kind, f.message, f.traceback, errno=f.errno, path=f.path,
                       resource=f.resource)


# -- results of the tool operations, checked field by field ----------------------------------


def _hostile(what: str, why: str) -> ProtocolError:
    return ProtocolError(f"{what} {why}; the worker is broken or hostile")


def parse_bytes(value: object, what: str) -> bytes:
    """A result that must be bytes (a file's content)."""
    if not isinstance(value, bytes):
        raise _hostile(what, f"is a {type(value).__name__}, not bytes")
    return value


def _field(reply: dict[Any, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    value = reply.get(key)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _hostile(what, f"field {key!r} is a {type(value).__name__}")
    return value


def parse_entries(value: object, what: str = "the listing") -> list[dict[str, Any]]:
    """A directory listing: a list of maps with a string "name", "type" and an int "size"."""
    if not isinstance(value, list):
        raise _hostile(what, f"is a {type(value).__name__}, not a list")
    entries = []
    for entry in value:
        if not isinstance(entry, dict):
            raise _hostile(what, f"holds a {type(entry).__name__}, not a map")
        name = _field(entry, "name", (str,), what)
        if not name or len(name) > _MAX_NAME * 2 or "/" in name or name in (".", ".."):
            raise _hostile(what, "holds an entry name that no directory can hold")
        entries.append({"name": name, "type": _field(entry, "type", (str,), what),
                        "size": _field(entry, "size", (int,), what)})
    return entries


# Everything of an exec reply beside its two outputs (the envelope, codes, flags, counters, the
# Docker worker's cgroup counters) fits in this, with room to spare.
EXEC_ENVELOPE = 64 << 10
# No count a worker reports is larger: bigger is a hostile number, not a count.
_MAX_COUNT = 1 << 62


def exec_output_cap(frame_cap: int, asked: int | None = None) -> int:
    """The most each of an exec's stdout and stderr may keep so that both, with the rest of
    the reply, fit one frame of ``frame_cap`` bytes: ``asked`` clamped to that, or all of it
    when None. Host and worker both clamp, each to its own frame cap."""
    fit = max(0, (frame_cap - EXEC_ENVELOPE) // 2)
    return fit if asked is None else max(0, min(asked, fit))


@dataclass(frozen=True)
class ExecReply:
    """What the worker reports of one command (the host adds its own counters)."""

    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    disk_full: bool
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_dropped: int       # bytes past the cap, read and thrown away
    stderr_dropped: int
    max_rss_bytes: int        # the largest resident set of the command's processes
    cpu_user_s: float = 0.0   # user and system CPU of the command and its waited children
    cpu_system_s: float = 0.0


def _count(reply: dict[Any, Any], key: str, what: str) -> int:
    value = _field(reply, key, (int,), what)
    if not 0 <= value < _MAX_COUNT:
        raise _hostile(what, f"field {key!r} is not a count")
    return int(value)


def _seconds(reply: dict[Any, Any], key: str, what: str) -> float:
    """CPU seconds a worker reports (0 when it does not: an older worker)."""
    value = reply.get(key, 0.0)
    if type(value) not in (int, float) or not 0 <= value < 1e9:
        raise _hostile(what, f"field {key!r} is not a number of seconds")
    return float(value)


def parse_exec(value: object, max_output: int | None = None) -> ExecReply:
    """An exec result; ``max_output`` is the cap the host asked for: a worker that sends more
    of either stream, or says it dropped bytes without saying it truncated, is hostile."""
    what = "the exec result"
    if not isinstance(value, dict):
        raise _hostile(what, f"is a {type(value).__name__}, not a map")
    flags = {k: _field(value, k, (bool,), what)
             for k in ("timed_out", "stdout_truncated", "stderr_truncated")}
    reply = ExecReply(
        exit_code=_field(value, "exit_code", (int, type(None)), what),
        signal=_field(value, "signal", (int, type(None)), what),
        stdout=_field(value, "stdout", (bytes,), what),
        stderr=_field(value, "stderr", (bytes,), what),
        disk_full=bool(_field(value, "disk_full", (bool,), what)),
        stdout_dropped=_count(value, "stdout_dropped", what),
        stderr_dropped=_count(value, "stderr_dropped", what),
        max_rss_bytes=_count(value, "max_rss_bytes", what),
        cpu_user_s=_seconds(value, "cpu_user_s", what),
        cpu_system_s=_seconds(value, "cpu_system_s", what), **flags)
    if (reply.exit_code is None) == (reply.signal is None):
        raise _hostile(what, "has both or neither of an exit code and a signal")
    if reply.signal is not None and not 0 < reply.signal < 65:
        raise _hostile(what, f"names signal {reply.signal}")
    for name, data, dropped, cut in (
            ("stdout", reply.stdout, reply.stdout_dropped, reply.stdout_truncated),
            ("stderr", reply.stderr, reply.stderr_dropped, reply.stderr_truncated)):
        if max_output is not None and len(data) > max_output:
            raise _hostile(what, f"carries {len(data)} bytes of {name}, over the cap of "
                                 f"{max_output} asked for")
        if cut != (dropped > 0):
            raise _hostile(what, f"says {name} was {'' if cut else 'not '}truncated with "
                                 f"{dropped} bytes dropped")
    return reply
