"""Fuzzing and property testing: ForkServer, its Verdicts, the ``isolated`` decorator and the
pytest plugin (warden.testing.plugin). Imports lazily: hypothesis is imported only by what
needs it, and never inside a sandbox's fork server."""

from __future__ import annotations

import importlib as _importlib

_WHERE = {
    "ForkServer": "warden.testing.forkserver",
    "Verdict": "warden.testing.verdict",
    "ExceptionInfo": "warden.testing.verdict",
    "IsolatedFailure": "warden.testing.decorator",
    "isolated": "warden.testing.decorator",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'warden.testing' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
