"""Execution backends behind one small protocol (``providers.base``): ``native`` and
``docker`` built in, more through the entry-point group ``warden.providers``; the registry
(``providers.registry``) names them, so no provider imports another.

Nothing here is imported until asked for: importing warden never imports the Docker SDK.
"""

from __future__ import annotations

from typing import Any

__all__ = ["available", "get_provider", "resolve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from warden.providers import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'warden.providers' has no attribute {name!r}")
