"""Checks of what a caller passes, done before anything runs: a wrong argument is an
InvalidArgument naming the argument, the value and what is allowed, never a failure deep in
a provider, a binding or the channel."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from warden.errors import InvalidArgument
from warden.spec.limits import Limits

__all__ = ["MAX_TIMEOUT_S", "argv_list", "cwd_path", "env_map", "limits_of", "output_cap",
           "stdin_bytes", "timeout_s"]

# The longest timeout a call or command may ask for: a week, as for Limits.wall_time_s. Longer
# is a typo or a way to hold a sandbox forever; "no timeout of its own" is None.
MAX_TIMEOUT_S = 7 * 24 * 3600.0


def argv_list(argv: object, name: str = "argv") -> list[str]:
    """A command as a list of strings: a str alone would be split into characters."""
    if isinstance(argv, (str, bytes)):
        raise InvalidArgument(name, argv, "a list of strings, e.g. ['ls', '-l'], not one string "
                              "(for a shell line pass ['sh', '-c', line])")
    if not isinstance(argv, Sequence):
        raise InvalidArgument(name, argv, "a list of strings")
    out = []
    for item in argv:
        if not isinstance(item, (str, bytes, os.PathLike)):
            raise InvalidArgument(name, argv, f"strings only; item {item!r} is a "
                                  f"{type(item).__name__}")
        text = os.fsdecode(item)
        if "\0" in text:
            raise InvalidArgument(name, argv, "strings without NUL bytes")
        out.append(text)
    if not out or not out[0]:
        raise InvalidArgument(name, argv, "a non-empty list whose first item names the command")
    return out


def stdin_bytes(stdin: object) -> bytes | None:
    if stdin is None or isinstance(stdin, bytes):
        return stdin
    if isinstance(stdin, str):
        return stdin.encode()
    if isinstance(stdin, (bytearray, memoryview)):
        return bytes(stdin)
    raise InvalidArgument("stdin", stdin, "None, bytes or str")


def timeout_s(timeout: object, name: str = "timeout") -> float | None:
    """None (the sandbox's own wall_time_s) or a finite number of seconds above 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidArgument(name, timeout, "None or a number of seconds")
    if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT_S:
        raise InvalidArgument(name, timeout, f"a finite number of seconds above 0 and at most "
                              f"{MAX_TIMEOUT_S:g}; None means the sandbox's wall_time_s")
    return float(timeout)


def limits_of(limits: object) -> Limits:
    if limits is None:
        return Limits()
    if not isinstance(limits, Limits):
        raise InvalidArgument("limits", limits, "a warden.Limits (e.g. Limits(memory_mb=128)) "
                              "or None")
    return limits


def cwd_path(cwd: object) -> str | None:
    if cwd is None:
        return None
    if not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd:
        raise InvalidArgument("cwd", cwd, "an absolute path inside the sandbox, e.g. "
                              "'/workspace/src'")
    return cwd


def env_map(env: object) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise InvalidArgument("env", env, "a mapping of variable names to strings")
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise InvalidArgument("env", env, f"variable names that are non-empty strings "
                                  f"without '=' or NUL; {key!r} is not one")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidArgument("env", env, f"string values without NUL bytes; {key} is "
                                  f"{type(value).__name__}")
    return dict(env)


def output_cap(cap: object, name: str = "max_output_bytes") -> int | None:
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= 1 << 40:
        raise InvalidArgument(name, cap, "a whole number of bytes from 0 up, or None")
    return cap
