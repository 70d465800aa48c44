"""Operator ceilings: a manifest cannot grant itself more than the operator allows.

A plugin's manifest states its own limits and relaxes the scanner's policy for itself. The
operator of an engine bounds both (``Engine(max_limits=..., policy=..., relaxable=...)``), and
:func:`check` is the one place that holds a manifest against those bounds; the service applies
it per tenant with that tenant's bounds. A manifest over a bound is refused at load, with a
ManifestError naming the field, its value and the bound; nothing of it runs.

``max_limits``: a :class:`Ceilings`, or a mapping of its field names. A field left None bounds
nothing beyond the manifest's own validation.

``policy``: the operator's scanner policy. It takes the place of warden's default for every
plugin of the engine (a manifest without ``scan:``, or with ``extends: default``, starts from
it), and a manifest may permit nothing it forbids, by ``allowed_imports`` or by ``scan:``
(``allow_*``, ``extends: empty``), except what ``relaxable`` lists: a mapping of ``modules``,
``builtins``, ``names`` and ``attributes`` to the names a manifest may allow (a module covers
its submodules, as in a policy). With neither given, a manifest relaxes as it likes (warden's
default policy is then only the starting point); ``relaxable`` alone bounds relaxation of
warden's default policy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from warden.errors import InvalidArgument, ManifestError
from warden.plugins.manifest import Manifest, scan_policy
from warden.scan import Policy

__all__ = ["Ceilings", "check", "relaxable_map"]

_KINDS = ("modules", "builtins", "names", "attributes")
_SINGULAR = {"modules": "module", "builtins": "builtin", "names": "name",
             "attributes": "attribute"}


@dataclass(frozen=True)
class Ceilings:
    """The most a manifest of the engine may ask for; None: no ceiling for that field.

    ``memory_mb``, ``pids``, ``cpus``, ``timeout_seconds``, ``disk_mb`` bound the manifest's
    ``resources.max_memory_mb``, ``max_pids``, ``cpus``, ``timeout_seconds``, ``max_disk_mb``;
    ``workers`` bounds ``pool.max_workers`` (so ``min_workers`` too) and ``warm_workers``
    ``pool.min_workers`` (the workers kept alive while idle); ``rate_calls_per_second`` bounds
    ``resources.rate_limit`` (calls / period_seconds; a manifest without a rate limit is then
    refused) and ``rate_burst`` its ``calls`` (the most calls at once after a quiet spell).
    """

    memory_mb: int | None = None
    pids: int | None = None
    cpus: float | None = None
    timeout_seconds: float | None = None
    disk_mb: int | None = None
    workers: int | None = None
    warm_workers: int | None = None
    rate_calls_per_second: float | None = None
    rate_burst: int | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            whole = f.name in _WHOLE
            may_be_zero = f.name == "warm_workers"
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or (whole and not isinstance(value, int)) or not math.isfinite(value)
                    or value < 0 or (value == 0 and not may_be_zero)):
                kind = "a whole number" if whole else "a finite number"
                least = "of 0 or more" if may_be_zero else "greater than 0"
                raise InvalidArgument(f"max_limits.{f.name}", value,
                                      f"{kind} {least}, or None for no ceiling")

    @classmethod
    def of(cls, value: Ceilings | Mapping[str, object] | None) -> Ceilings | None:
        """``value`` as Ceilings: a Ceilings, a mapping of its field names, or None."""
        if value is None or isinstance(value, Ceilings):
            return value
        if not isinstance(value, Mapping):
            raise InvalidArgument("max_limits", value, "a warden.Ceilings, a mapping of its "
                                  "field names, or None")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in value:
            if key not in names:
                raise InvalidArgument("max_limits", key, "field names of warden.Ceilings: "
                                      + ", ".join(names))
        return cls(**value)  # type: ignore[arg-type]


_WHOLE = frozenset({"memory_mb", "pids", "disk_mb", "workers", "warm_workers", "rate_burst"})

# Ceiling -> the manifest field it bounds and how to read it.
_BOUNDED = (
    ("memory_mb", "resources.max_memory_mb", lambda m: m.resources.max_memory_mb),
    ("pids", "resources.max_pids", lambda m: m.resources.max_pids),
    ("cpus", "resources.cpus", lambda m: m.resources.cpus),
    ("timeout_seconds", "resources.timeout_seconds", lambda m: m.resources.timeout_seconds),
    ("disk_mb", "resources.max_disk_mb", lambda m: m.resources.max_disk_mb),
    ("workers", "pool.max_workers", lambda m: m.pool.max_workers),
    ("warm_workers", "pool.min_workers", lambda m: m.pool.min_workers),
)


def relaxable_map(value: Mapping[str, object] | None) -> Mapping[str, tuple[str, ...]] | None:
    """``relaxable`` checked: kinds (modules, builtins, names, attributes) to name tuples."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgument("relaxable", value, "a mapping of modules, builtins, names and "
                              "attributes to lists of names a manifest may allow, or None")
    out: dict[str, tuple[str, ...]] = {}
    for kind, names in value.items():
        if kind not in _KINDS:
            raise InvalidArgument("relaxable", kind, "keys modules, builtins, names, attributes")
        try:
            Policy.empty().allow(**{kind: names})  # type: ignore[arg-type]
        except ManifestError as exc:
            raise InvalidArgument(f"relaxable[{kind!r}]", exc.value, exc.allowed) from None
        out[kind] = tuple(names)  # type: ignore[arg-type]
    return out


def check(manifest: Manifest, max_limits: Ceilings | None = None, *,
          policy: Policy | None = None,
          relaxable: Mapping[str, tuple[str, ...]] | None = None, source: str = "") -> Policy:
    """Refuse ``manifest`` (ManifestError naming the field, value and bound, ``source`` its
    file) if it asks for more than ``max_limits`` or relaxes ``policy`` beyond ``relaxable``
    (see the module's docstring); else return the policy its sources are scanned with."""
    if max_limits is not None:
        _check_limits(manifest, max_limits, source)
    effective = scan_policy(manifest, base=policy)
    if policy is None and relaxable is None:
        return effective
    floor = (Policy.default() if policy is None else policy).allow(**(relaxable or {}))
    for kind, name in _loosened(effective, floor):
        field, value = _culprit(manifest, kind, name)
        what = f"{_SINGULAR[kind]} {name!r}" if name != "*" else "modules that no entry names"
        raise ManifestError(field, value, f"only what this engine's scanner policy permits: "
                            f"it forbids {what}, and a manifest may relax only what the "
                            "engine's operator lists as relaxable", source)
    return effective


def _check_limits(manifest: Manifest, ceilings: Ceilings, source: str) -> None:
    for name, field, read in _BOUNDED:
        most = getattr(ceilings, name)
        value = read(manifest)
        if most is not None and value > most:
            raise ManifestError(field, value, f"at most {most:g} (this engine's ceiling "
                                f"max_limits.{name})", source)
    rate = manifest.resources.rate_limit
    per_second = ceilings.rate_calls_per_second
    if per_second is not None:
        if rate is None:
            raise ManifestError("resources.rate_limit", None, f"a rate limit of at most "
                                f"{per_second:g} calls per second (this engine's ceiling "
                                "max_limits.rate_calls_per_second)", source)
        if rate.calls / rate.period_seconds > per_second:
            raise ManifestError("resources.rate_limit",
                                f"{rate.calls} calls per {rate.period_seconds:g}s",
                                f"at most {per_second:g} calls per second (this engine's "
                                "ceiling max_limits.rate_calls_per_second)", source)
    if ceilings.rate_burst is not None:
        calls = None if rate is None else rate.calls
        if calls is None or calls > ceilings.rate_burst:
            raise ManifestError("resources.rate_limit.calls", calls,
                                f"at most {ceilings.rate_burst} (this engine's ceiling "
                                "max_limits.rate_burst)", source)


def _loosened(policy: Policy, floor: Policy) -> Iterator[tuple[str, str]]:
    """(kind, name) of what ``floor`` forbids and ``policy`` permits; "*" for modules that no
    entry of either names."""
    for kind in _KINDS[1:]:
        attr = f"forbidden_{kind}"
        for name in sorted(getattr(floor, attr) - getattr(policy, attr)):
            yield kind, name
    # A module's verdict is decided by its longest dotted prefix among the entries, and every
    # entry of either policy is one of these probes: so modules between two probes are judged
    # as the probe above them, and one name that no entry covers stands for all the rest.
    entries = (floor.forbidden_modules | floor.allowed_modules | policy.forbidden_modules
               | policy.allowed_modules)
    other = "_"
    while other in entries:
        other += "_"
    for module in [*sorted(entries - {"*"}), other]:
        if floor.module_forbidden(module) and not policy.module_forbidden(module):
            yield "modules", "*" if module == other else module


def _covers(entry: str, module: str) -> bool:
    return entry in ("*", module) or module.startswith(entry + ".")


def _culprit(manifest: Manifest, kind: str, name: str) -> tuple[str, object]:
    """The manifest field that permitted ``name``, and its value there."""
    rules = manifest.scan_rules or {}

    def listed(key: str) -> tuple[str, ...]:
        value = rules.get(key)
        return value if isinstance(value, tuple) else ()

    if kind == "modules":
        for field, entries in (("allowed_imports", manifest.allowed_imports),
                               ("scan.allow_modules", listed("allow_modules"))):
            hit = next((e for e in entries if _covers(e, name)), None)
            if hit is not None:
                return field, hit
    elif name in listed(f"allow_{kind}"):
        return f"scan.allow_{kind}", name
    return "scan.extends", rules.get("extends", "default")
