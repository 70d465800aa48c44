"""The service's configuration file (YAML or TOML, by its suffix): server bounds and per-tenant
quotas. Every field is checked when the file is read; an unknown key or a wrong value is an
InvalidArgument naming it, so a typo never silently leaves a tenant unbounded.

::

    server:
      max_json_bytes: 1048576    # a JSON request body larger than this is 413
      workers: 16                # threads for sandbox work (file streams have as many again)
    defaults:                    # every tenant's quotas unless its own entry says otherwise
      sandboxes: 10              # live sandboxes
      memory_mb: 4096            # sum of the live sandboxes' memory limits
      max_memory_mb: 1024        # the largest limits one sandbox may ask for
      max_disk_mb: 1024
      max_pids: 256
      max_cpus: 2
      max_wall_time_s: 3600
      requests_per_s: 50         # with a burst of as many
    tenants:
      acme: {sandboxes: 2}
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from warden.errors import InvalidArgument, ManifestError

__all__ = ["Config", "Quotas", "load"]

_MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class Quotas:
    """What one tenant may hold and ask for at once."""

    sandboxes: int = 10
    memory_mb: int = 4096
    max_memory_mb: int = 1024
    max_disk_mb: int = 1024
    max_pids: int = 256
    max_cpus: float = 2.0
    max_wall_time_s: float = 3600.0
    requests_per_s: float = 50.0


@dataclass(frozen=True)
class Config:
    max_json_bytes: int = 1 << 20
    workers: int = 16
    defaults: Quotas = field(default_factory=Quotas)
    tenants: dict[str, Quotas] = field(default_factory=dict)

    def quotas(self, tenant: str) -> Quotas:
        return self.tenants.get(tenant, self.defaults)


def _number(where: str, value: object, whole: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (whole and not isinstance(value, int)) or not 0 < value < 1 << 40:
        raise InvalidArgument(where, value, "a whole number above 0" if whole else
                              "a number above 0")
    return value


def _quotas(where: str, raw: object, base: Quotas) -> Quotas:
    if not isinstance(raw, dict):
        raise InvalidArgument(where, raw, "a mapping of quota names to numbers")
    fields = {f.name: f for f in dataclasses.fields(Quotas)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise InvalidArgument(f"{where}.{key}", value, "one of " + ", ".join(fields))
        values[key] = _number(f"{where}.{key}", value, fields[key].type == "int")
    return dataclasses.replace(base, **values)


def _parse(raw: object) -> Config:
    if raw is None:
        return Config()
    if not isinstance(raw, dict) or set(raw) - {"server", "defaults", "tenants"}:
        raise InvalidArgument("config", sorted(raw) if isinstance(raw, dict) else raw,
                              "a mapping with server, defaults and tenants")
    server = raw.get("server") or {}
    if not isinstance(server, dict) or set(server) - {"max_json_bytes", "workers"}:
        raise InvalidArgument("server", server, "a mapping of max_json_bytes and workers")
    sizes = {k: int(_number(f"server.{k}", v, True)) for k, v in server.items()}
    defaults = _quotas("defaults", raw.get("defaults") or {}, Quotas())
    tenants_raw = raw.get("tenants") or {}
    if not isinstance(tenants_raw, dict):
        raise InvalidArgument("tenants", tenants_raw, "a mapping of tenant names to quotas")
    tenants = {str(name): _quotas(f"tenants.{name}", q or {}, defaults)
               for name, q in tenants_raw.items()}
    return Config(defaults=defaults, tenants=tenants, **sizes)


def load(path: str | os.PathLike[str] | None) -> Config:
    """The configuration in ``path`` (.toml for TOML, anything else YAML); the built-in
    defaults when None."""
    if path is None:
        return Config()
    with open(path, "rb") as f:
        data = f.read(_MAX_CONFIG_BYTES + 1)
    if len(data) > _MAX_CONFIG_BYTES:
        raise InvalidArgument("config", os.fspath(path), "a file of at most 1 MiB")
    if os.fspath(path).endswith(".toml"):
        if sys.version_info < (3, 11):
            raise InvalidArgument("config", os.fspath(path), "YAML on Python 3.10 (tomllib "
                                  "is 3.11+)")
        import tomllib  # type: ignore[import-not-found,unused-ignore]

        try:
            raw: object = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument("config", os.fspath(path), f"valid TOML ({exc})") from None
    else:
        from warden.plugins import yaml_safe

        try:
            raw = yaml_safe.load(data, source=os.fspath(path), max_bytes=_MAX_CONFIG_BYTES)
        except ManifestError as exc:
            raise InvalidArgument("config", os.fspath(path), f"valid YAML ({exc})") from None
    return _parse(raw)
