"""The native provider: sandboxes made by warden's own C++ core (``_core``), Python workers
forked by a clean zygote, one-shot commands through sandboxes made ahead (``prepare``).

Modules: ``provider`` (NativeProvider), ``state`` (NativeState, what it knows of one sandbox),
``runner`` (one command in a fresh sandbox), ``prepare`` (sandboxes made ahead, removal after
the run), ``zygote`` (the interpreter that forks workers). The zygote imports ``providers.native.zygote`` alone, so this file loads nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NativeProvider"]


def __getattr__(name: str) -> Any:
    if name == "NativeProvider":
        from warden.providers.native.provider import NativeProvider

        return NativeProvider
    raise AttributeError(f"module 'warden.providers.native' has no attribute {name!r}")
