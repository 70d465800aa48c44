"""The environment of a sandboxed command: a fixed, clean set of variables (PATH, HOME, LANG)
and only what the caller adds, and the host paths of the Python installation that every
sandbox binds read-only."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from functools import lru_cache

__all__ = ["FIXED_ENV", "python_paths", "sandbox_env", "sandbox_path"]

FIXED_ENV = {"PATH": "", "HOME": "/workspace", "LANG": "C.UTF-8"}
_SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


@lru_cache(maxsize=1)
def python_paths() -> tuple[str, ...]:
    """The Python installation in use, bound read-only into every sandbox (outside /usr)."""
    paths = []
    for p in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}:
        if p != "/usr" and not p.startswith("/usr/"):
            paths.append(p)
    return tuple(sorted(paths))


@lru_cache(maxsize=1)
def sandbox_path() -> str:
    bins = [os.path.join(p, "bin") for p in python_paths()]
    return ":".join([*bins, *_SYSTEM_PATH])


def sandbox_env(env: Mapping[str, str] | None) -> list[str]:
    """A clean environment: the fixed PATH/HOME/LANG, then only what the caller gave."""
    merged = dict(FIXED_ENV, PATH=sandbox_path())
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"environment variable name {key!r} is not valid")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"environment variable {key} must be a string without NUL bytes")
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]
