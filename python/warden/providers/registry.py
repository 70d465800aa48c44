"""Provider registry: ``native`` and ``docker`` built in, more through the entry-point group
``warden.providers`` (a third party registers ``name = "pkg.module:ProviderClass"``).

Providers are imported only when asked for: importing warden never imports the Docker SDK.
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points

from warden.errors import InvalidArgument, ProviderUnavailable

__all__ = ["get_provider", "available", "resolve", "BUILTIN"]

BUILTIN = {
    "native": "warden.providers.native.provider:NativeProvider",
    "docker": "warden.providers.docker.provider:DockerProvider",
}
ENTRY_POINT_GROUP = "warden.providers"

log = logging.getLogger(__name__)

_instances: dict = {}
_lock = threading.Lock()


def _targets() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def available() -> list[str]:
    return sorted(_targets())


def resolve(name: str) -> str:
    """'auto' becomes 'native' when this host can run the native sandbox, else 'docker'."""
    if name != "auto":
        return name
    from warden.host import doctor

    return "native" if doctor.report().get("ok") else "docker"


def get_provider(name: str = "native"):
    """The provider called ``name`` (one per process). A name no provider is registered under
    is an InvalidArgument; a known one that cannot load here (its SDK missing) is
    ProviderUnavailable."""
    if not isinstance(name, str):
        raise InvalidArgument("provider", name, "a provider's name: 'auto', "
                              + ", ".join(repr(n) for n in available()))
    name = resolve(name)
    with _lock:
        if name in _instances:
            return _instances[name]
        target = _targets().get(name)
        if target is None:
            raise InvalidArgument("provider", name, "one of 'auto', "
                                  + ", ".join(repr(n) for n in available()))
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = "pip install 'warden[docker]'" if name == "docker" else str(exc)
            raise ProviderUnavailable(f"provider {name!r} ({exc.name or exc})", hint) from exc
        provider = getattr(module, attr)()
        log.debug("provider %r loaded from %s", name, target)
        _instances[name] = provider
        return provider
