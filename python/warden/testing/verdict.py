"""What became of one input of a fork server: the Verdict, judged on the host from the facts
the sandbox reports (wait status, rusage, the child's own result bytes), and its bucket.

Everything here reads what came out of a sandbox: each record is checked field by field,
texts are cut, and a record that does not fit is a ProtocolError.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal as _signal
from dataclasses import dataclass, field
from typing import Any

from warden.errors import ProtocolError
from warden.guest import carry

__all__ = ["OUTCOMES", "ExceptionInfo", "Verdict", "bucket_of", "judge"]

OUTCOMES = ("ok", "exception", "crash", "timeout", "memory")
# How many innermost frames name a bucket: enough to tell two call sites of one helper
# apart, few enough that a change far up the stack leaves the bucket as it was.
BUCKET_FRAMES = 3
_MAX_TEXT = 64 << 10
_MAX_FRAMES = 64
# A frame of faulthandler's report: '  File "x.py", line 5 in target'
_FAULT_FRAME = re.compile(r'^ {2}File "(.{1,4096}?)", line (\d{1,9}) in (.{1,200})$', re.M)
# warden's own frames (the child's call of the target) name no bug.
_OWN = os.sep + os.path.join("warden", "guest") + os.sep


@dataclass(frozen=True)
class ExceptionInfo:
    """An exception an input raised: its type's name (``ValueError``, ``mod.Error``), its
    message and its formatted traceback (the target's frames only)."""

    type: str
    message: str
    traceback: str
    frames: tuple[tuple[str, int, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Verdict:
    """What became of one input. ``outcome`` is one of "ok", "exception", "crash", "timeout",
    "memory". ``value`` is the target's return value (for "ok"); ``exception`` the exception
    (for "exception", and for "memory" when an allocation raised MemoryError); ``signal`` the
    signal that ended the input (for "crash", exact: abort() is SIGABRT, and for a timeout the
    SIGKILL or SIGXCPU that ended it); ``exit_code`` when the input ended the process itself
    without a result (os._exit); ``duration_s`` from fork to reaping; ``peak_memory_bytes``
    the child's peak resident size (pages it shares with the fork server included);
    ``bucket`` a stable id of how it failed (None for "ok"); ``stderr`` the last 16 KiB the
    input wrote to stderr (a crash's Python stack from faulthandler among it)."""

    outcome: str
    value: Any = None
    exception: ExceptionInfo | None = None
    signal: int | None = None
    exit_code: int | None = None
    duration_s: float = 0.0
    peak_memory_bytes: int = 0
    bucket: str | None = None
    stderr: bytes = field(default=b"", repr=False)

    @property
    def failed(self) -> bool:
        return self.outcome != "ok"

    def describe(self) -> str:
        """One line for people: what happened, where."""
        if self.outcome == "ok":
            return f"ok in {self.duration_s * 1e3:.1f} ms"
        parts = [self.outcome]
        if self.signal is not None:
            parts.append(_signal_name(self.signal))
        if self.exit_code is not None:
            parts.append(f"exit {self.exit_code}")
        if self.exception is not None:
            parts.append(f"{self.exception.type}: {self.exception.message[:200]}")
        where = _top_frame(self)
        if where:
            parts.append(f"at {where}")
        parts.append(f"[bucket {self.bucket}]")
        return " ".join(parts)


def _signal_name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _top_frame(v: Verdict) -> str:
    frames = v.exception.frames if v.exception else _fault_frames(v.stderr)
    if not frames:
        return ""
    f, line, name = frames[-1]
    return f"{f}:{line} in {name}"


def _fault_frames(stderr: bytes) -> tuple[tuple[str, int, str], ...]:
    """The crashing thread's Python frames from faulthandler's report, innermost last."""
    text = stderr.decode("utf-8", "replace")
    at = text.rfind("Fatal Python error")
    if at < 0:
        return ()
    section = text[at:]
    # faulthandler lists the crashing thread as "Current thread"; other threads follow.
    cur = section.find("Current thread")
    if cur >= 0:
        section = section[cur:]
        nxt = section.find("\n\nThread ", 1)
        if nxt >= 0:
            section = section[:nxt]
    frames = [(m.group(1), int(m.group(2)), m.group(3).strip())
              for m in _FAULT_FRAME.finditer(section)]
    return tuple(reversed(frames[:_MAX_FRAMES]))  # faulthandler prints innermost first


def bucket_of(outcome: str, kind: str, frames: tuple[tuple[str, int, str], ...]) -> str:
    """A stable id for a failure: the outcome, the exception type or signal, and the innermost
    frames that are not warden's own (file, line, function). Addresses, messages and timings
    are left out, so one bug gives one bucket run after run."""
    own = [f for f in frames if _OWN not in f[0]]
    top = own[-BUCKET_FRAMES:]
    key = "\n".join([outcome, kind, *(f"{f}:{line}:{name}" for f, line, name in top)])
    return hashlib.sha256(key.encode("utf-8", "backslashreplace")).hexdigest()[:16]


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"a fork server result's {what} is not text")
    return value[:_MAX_TEXT]


def _exception(raw: object) -> ExceptionInfo:
    if not isinstance(raw, list) or len(raw) != 4 or not isinstance(raw[3], list):
        raise ProtocolError("a fork server result's exception is not [type, message, "
                            "traceback, frames]")
    frames = []
    for f in raw[3][-_MAX_FRAMES:]:
        if (not isinstance(f, list) or len(f) != 3 or not isinstance(f[1], int)
                or isinstance(f[1], bool)):
            raise ProtocolError("a fork server result's frame is not [file, line, name]")
        frames.append((_text(f[0], "file")[:4096], f[1], _text(f[2], "function")[:200]))
    return ExceptionInfo(_text(raw[0], "type")[:200], _text(raw[1], "message"),
                         _text(raw[2], "traceback"), tuple(frames))


def _result(blob: bytes | None) -> tuple[str, Any, ExceptionInfo | None]:
    """(outcome, value, exception) from the child's own report."""
    msg = carry.decode(blob) if blob is not None else None
    if not isinstance(msg, dict):
        raise ProtocolError("a fork server result is not a map")
    if "v" in msg:
        return "ok", msg["v"], None
    if "big" in msg:
        size = msg["big"] if isinstance(msg["big"], int) else -1
        return "exception", None, ExceptionInfo(
            "PayloadTooLarge", f"the target's result of {size} bytes is over the fork "
            "server's result cap", "")
    exc = _exception(msg.get("e"))
    return ("memory" if msg.get("m") is True else "exception"), None, exc


def _check(record: object) -> list:
    types: tuple[Any, ...] = (int, int, bool, int, int, int, (bytes, type(None)), bytes)
    if (not isinstance(record, list) or len(record) != len(types)
            or not all(isinstance(v, t) for v, t in zip(record, types))):
        raise ProtocolError("a fork server record is not [kind, status, timed_out, rss, cpu, "
                            "duration, result, stderr]")
    return record


def judge(record: object, cpu_limit_s: int | None) -> Verdict:
    """The Verdict of one record of a fork server's reply."""
    kind, status, timed_out, rss_kib, cpu_us, duration_ns, blob, stderr = _check(record)
    stderr = stderr[-_MAX_TEXT:]
    base: dict[str, Any] = {"duration_s": max(duration_ns, 0) / 1e9,
                            "peak_memory_bytes": max(rss_kib, 0) * 1024, "stderr": stderr}
    if kind != 0:
        raise ProtocolError(f"the fork server could not fork for an input (errno {status})")
    cpu_over = cpu_limit_s is not None and cpu_us >= cpu_limit_s * 1_000_000
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if timed_out or sig == _signal.SIGXCPU or (sig == _signal.SIGKILL and cpu_over):
            why = "wall" if timed_out else "cpu"
            return Verdict("timeout", signal=sig, bucket=bucket_of("timeout", why, ()), **base)
        frames = _fault_frames(stderr)
        return Verdict("crash", signal=sig, bucket=bucket_of("crash", _signal_name(sig), frames),
                       **base)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    if blob is None or code != 0:
        return Verdict("crash", exit_code=code, bucket=bucket_of("crash", f"exit {code}", ()),
                       **base)
    outcome, value, exc = _result(blob)
    if exc is None:
        return Verdict("ok", value=value, **base)
    return Verdict(outcome, exception=exc, bucket=bucket_of(outcome, exc.type, exc.frames),
                   **base)
