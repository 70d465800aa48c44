"""plugin.yaml: parsing and validation into frozen dataclasses.

The accepted shape (every field optional but ``name``; the values shown are the defaults,
except ``env``, which defaults to empty)::

    name: transform
    version: 1.0.0
    entry_point: src/main.py
    resources:
      max_memory_mb: 128
      max_disk_mb: 100
      timeout_seconds: 5
      max_pids: 32
      cpus: 1.0
      rate_limit: {calls: 100, period_seconds: 60}    # null: no rate limit
    network: none                     # or {allow: [api.example.com:443], deny: [...]}
    allowed_imports: [json]
    env: {MODE: fast}
    pool: {min_workers: 1, max_workers: 4, max_calls_per_worker: 100000, idle_seconds: 300}
    retry: {attempts: 1, backoff_seconds: 0.05, idempotent_actions: []}
    image: python:3.11-slim           # Docker provider only; none by default
    scan: {forbid_modules: [requests]} # the scanner's policy (warden.Policy.from_dict)

The file is untrusted input: it is size-capped, parsed with PyYAML's safe loader only, and
anchors, aliases, tags other than the plain ones and duplicate keys are refused before any
value is built (no "billion laughs"). Every refusal is a ManifestError naming the field, the
value and what is allowed.
"""

from __future__ import annotations

import math
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from warden.errors import ManifestError
from warden.plugins import files, yaml_safe

if TYPE_CHECKING:
    from warden.scan import Policy
from warden.plugins.network_section import network_section
from warden.spec.limits import Limits
from warden.spec.network import NetworkPolicy

__all__ = [
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "Manifest",
    "PoolSettings",
    "RateLimit",
    "Resources",
    "RetrySettings",
    "load_manifest",
    "manifest_from_dict",
    "parse_manifest",
    "read_manifest",
    "scan_policy",
]

MANIFEST_NAME = "plugin.yaml"
MAX_MANIFEST_BYTES = 64 << 10

# The same outer bounds as warden.Limits, so that to_limits() never refuses what passed here.
_MAX_MB = 1 << 20
_MAX_PIDS = 1 << 22
_MAX_CPUS = 1024.0
_MAX_SECONDS = 7 * 24 * 3600.0

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}\Z")
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_ACTION_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,128}\Z")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_MAX_ENV = 64
_MAX_ENV_VALUE = 4096
_MAX_LIST = 256

# Variables a plugin may never set: the dynamic loader's and Python's, glibc's hooks that load
# code or change allocation, and those that warden itself sets (paths, home, limits).
_ENV_DENY_PREFIXES = ("LD_", "PYTHON", "WARDEN_", "MALLOC_", "GLIBC_", "GCONV_", "OMP_",
                      "OPENBLAS_", "MKL_")
_ENV_DENY = frozenset({
    "PATH", "HOME", "PWD", "OLDPWD", "TMPDIR", "TMP", "TEMP", "SHELL", "USER", "LOGNAME",
    "IFS", "ENV", "BASH_ENV", "CDPATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "RES_OPTIONS",
    "LOCALDOMAIN", "TZDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "NSS_DBDIR", "LANGUAGE_PATH",
})


def _short(value: object) -> object:
    """The value as the error shows it: long strings and containers are cut."""
    if isinstance(value, str) and len(value) > 80:
        return value[:77] + "..."
    if isinstance(value, (dict, list, tuple, set)):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return value


def _err(path: str, value: object, allowed: str) -> ManifestError:
    return ManifestError(path, _short(value), allowed)


@dataclass(frozen=True)
class RateLimit:
    calls: int = 100
    period_seconds: float = 60.0


@dataclass(frozen=True)
class Resources:
    max_memory_mb: int = 128
    max_disk_mb: int = 100
    timeout_seconds: float = 5.0
    max_pids: int = 32
    cpus: float = 1.0
    rate_limit: RateLimit | None = field(default_factory=RateLimit)


@dataclass(frozen=True)
class PoolSettings:
    min_workers: int = 1
    max_workers: int = 4
    max_calls_per_worker: int = 100_000
    idle_seconds: float = 300.0


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 1
    backoff_seconds: float = 0.05
    idempotent_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str = "1.0.0"
    entry_point: str = "src/main.py"
    resources: Resources = field(default_factory=Resources)
    network: str | NetworkPolicy = "none"
    allowed_imports: tuple[str, ...] = ("json",)
    env: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}),
                                   hash=False)
    pool: PoolSettings = field(default_factory=PoolSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    # The container image for the Docker provider (the native provider refuses one).
    image: str | None = None
    # The scanner's policy from the scan: section, before allowed_imports; None: default.
    scan: Policy | None = None
    # The scan: section itself (lists as tuples), for an engine whose operator policy takes
    # the place of warden's default (scan_policy(manifest, base=...)).
    scan_rules: Mapping[str, object] | None = field(default=None, hash=False, compare=False)

    def to_limits(self) -> Limits:
        r = self.resources
        return Limits(memory_mb=r.max_memory_mb, pids=r.max_pids, cpus=r.cpus,
                      wall_time_s=r.timeout_seconds, disk_mb=r.max_disk_mb)


# ---------------------------------------------------------------------------------------------
# Field checks


def _mapping(path: str, value: object, allowed_keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise _err(path, value, f"a mapping with keys {', '.join(allowed_keys)}")
    for key in value:
        if key not in allowed_keys:
            shown = yaml_safe.key_name(key)
            where = f"{path}.{shown}" if path else shown
            raise _err(where, value[key],
                       f"no such field; known fields{' of ' + path if path else ''} are "
                       f"{', '.join(allowed_keys)}")
    return value


def _integer(path: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(path, value, f"a whole number from {lo} to {hi}")
    if not lo <= value <= hi:
        raise _err(path, value, f"a whole number from {lo} to {hi}")
    return value


def _number(path: str, value: object, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if lo_open:
        allowed = f"a number greater than {lo:g} and at most {hi:g}"
    else:
        allowed = f"a number from {lo:g} to {hi:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(path, value, allowed)
    if isinstance(value, float) and not math.isfinite(value):
        raise _err(path, value, allowed)
    if value > hi or value < lo or (lo_open and value == lo):
        raise _err(path, value, allowed)
    return float(value)


def _string(path: str, value: object, pattern: re.Pattern, allowed: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise _err(path, value, allowed)
    return value


def _string_list(path: str, value: object, pattern: re.Pattern, allowed: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _err(path, value, f"a list of {allowed}")
    if len(value) > _MAX_LIST:
        raise _err(path, f"{len(value)} entries", f"at most {_MAX_LIST} entries")
    out: list[str] = []
    for i, item in enumerate(value):
        out.append(_string(f"{path}[{i}]", item, pattern, allowed))
    if len(set(out)) != len(out):
        dup = next(x for x in out if out.count(x) > 1)
        raise _err(path, dup, "each entry once")
    return tuple(out)


def _entry_point(value: object) -> str:
    allowed = "a relative path to a .py file inside the plugin, without '..' (e.g. src/main.py)"
    if not isinstance(value, str) or not value.endswith(".py") or len(value) > 1024:
        raise _err("entry_point", value, allowed)
    if value.startswith("/") or "\\" in value or "\0" in value:
        raise _err("entry_point", value, allowed)
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise _err("entry_point", value, allowed)
    return value


def _env(value: object) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise _err("env", value, "a mapping of variable names to string values")
    if len(value) > _MAX_ENV:
        raise _err("env", f"{len(value)} variables", f"at most {_MAX_ENV} variables")
    out: dict[str, str] = {}
    for key, val in value.items():
        path = f"env.{key}"
        if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
            raise _err("env", key, "variable names of letters, digits and _ not starting "
                       "with a digit")
        upper = key.upper()
        if upper in _ENV_DENY or upper.startswith(_ENV_DENY_PREFIXES):
            raise _err(path, val, f"not settable: {key} is reserved (warden sets PATH, HOME, "
                       "TMPDIR and the limits itself; LD_*, PYTHON*, MALLOC_*, GLIBC_* and "
                       "similar variables change how code is loaded)")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise _err(path, val, "a string (or a number, taken as its text)")
        text = val if isinstance(val, str) else str(val)
        if len(text) > _MAX_ENV_VALUE or "\0" in text:
            raise _err(path, val, f"a string of at most {_MAX_ENV_VALUE} characters without NUL")
        out[key] = text
    return types.MappingProxyType(out)


def _version(value: object) -> str:
    allowed = "a version string such as 1.0.0 (quote it in YAML if it looks like a number)"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12:
        value = str(value)
    return _string("version", value, _VERSION_RE, allowed)


def _resources(value: object) -> Resources:
    d = _mapping("resources", value, ("max_memory_mb", "max_disk_mb", "timeout_seconds",
                                      "max_pids", "cpus", "rate_limit"))
    base = Resources()
    rate: RateLimit | None = base.rate_limit
    if "rate_limit" in d:
        raw = d["rate_limit"]
        if raw is None:
            rate = None
        else:
            r = _mapping("resources.rate_limit", raw, ("calls", "period_seconds"))
            rate = RateLimit(
                calls=_integer("resources.rate_limit.calls", r.get("calls", 100), 1, 10**9),
                period_seconds=_number("resources.rate_limit.period_seconds",
                                       r.get("period_seconds", 60.0), 0.0, _MAX_SECONDS,
                                       lo_open=True),
            )
    return Resources(
        max_memory_mb=_integer("resources.max_memory_mb", d.get("max_memory_mb",
                                                                base.max_memory_mb), 4, _MAX_MB),
        max_disk_mb=_integer("resources.max_disk_mb", d.get("max_disk_mb", base.max_disk_mb),
                             1, _MAX_MB),
        timeout_seconds=_number("resources.timeout_seconds",
                                d.get("timeout_seconds", base.timeout_seconds), 0.001,
                                _MAX_SECONDS),
        max_pids=_integer("resources.max_pids", d.get("max_pids", base.max_pids), 1, _MAX_PIDS),
        cpus=_number("resources.cpus", d.get("cpus", base.cpus), 0.01, _MAX_CPUS),
        rate_limit=rate,
    )


def _pool(value: object) -> PoolSettings:
    d = _mapping("pool", value, ("min_workers", "max_workers", "max_calls_per_worker",
                                 "idle_seconds"))
    base = PoolSettings()
    lo = _integer("pool.min_workers", d.get("min_workers", base.min_workers), 0, 1024)
    hi = _integer("pool.max_workers", d.get("max_workers", base.max_workers), 1, 1024)
    if lo > hi:
        raise _err("pool.min_workers", lo, f"at most pool.max_workers ({hi})")
    return PoolSettings(
        min_workers=lo,
        max_workers=hi,
        max_calls_per_worker=_integer("pool.max_calls_per_worker",
                                      d.get("max_calls_per_worker", base.max_calls_per_worker),
                                      1, 10**12),
        idle_seconds=_number("pool.idle_seconds", d.get("idle_seconds", base.idle_seconds),
                             0.0, _MAX_SECONDS),
    )


def _retry(value: object) -> RetrySettings:
    d = _mapping("retry", value, ("attempts", "backoff_seconds", "idempotent_actions"))
    base = RetrySettings()
    return RetrySettings(
        attempts=_integer("retry.attempts", d.get("attempts", base.attempts), 1, 10),
        backoff_seconds=_number("retry.backoff_seconds",
                                d.get("backoff_seconds", base.backoff_seconds), 0.0, 60.0),
        idempotent_actions=_string_list("retry.idempotent_actions",
                                        d.get("idempotent_actions", []), _ACTION_RE,
                                        "action names of letters, digits and _.:/-"),
    )


_TOP = ("name", "version", "entry_point", "resources", "network", "allowed_imports", "env",
        "pool", "retry", "image", "scan")
_IMAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}\Z")


def _scan_section(value: object) -> tuple[Policy | None, Mapping[str, object] | None]:
    if value is None:
        return None, None
    from warden.scan import Policy

    try:
        policy = Policy.from_dict(value)  # type: ignore[arg-type]
    except ManifestError as exc:
        raise _err(f"scan.{exc.field}" if exc.field != "scan" else "scan", exc.value,
                   exc.allowed) from None
    # from_dict accepted it: a mapping of names to strings or lists of strings.
    items = value.items() if isinstance(value, Mapping) else ()
    rules = {k: tuple(v) if isinstance(v, (list, tuple, set, frozenset)) else v
             for k, v in items}
    return policy, types.MappingProxyType(rules)


def manifest_from_dict(data: object) -> Manifest:
    """Validate already-parsed manifest data. Anything invalid raises ManifestError."""
    d = _mapping("", data, _TOP) if isinstance(data, dict) else None
    if d is None:
        raise _err("(document)", data, "a mapping with at least a name field")
    if "name" not in d:
        raise _err("name", None, "a name of letters, digits and _.- (up to 64), e.g. transform;"
                   " it is required")
    name = _string("name", d["name"], _NAME_RE,
                   "a name of letters, digits and _.- starting with a letter or digit "
                   "(up to 64)")
    network = network_section(d.get("network", "none"))
    scan, scan_rules = _scan_section(d.get("scan"))
    return Manifest(
        name=name,
        version=_version(d.get("version", "1.0.0")),
        entry_point=_entry_point(d.get("entry_point", "src/main.py")),
        resources=_resources(d.get("resources", {})),
        network=network,
        allowed_imports=_string_list("allowed_imports", d.get("allowed_imports", ["json"]),
                                     _MODULE_RE, "module names such as json or xml.etree"),
        env=_env(d.get("env", {})),
        pool=_pool(d.get("pool", {})),
        retry=_retry(d.get("retry", {})),
        image=None if d.get("image") is None else _string(
            "image", d["image"], _IMAGE_RE, "a Docker image reference such as "
            "python:3.11-slim or registry/name@sha256:..."),
        scan=scan,
        scan_rules=scan_rules,
    )


def parse_manifest(text: str | bytes, *, source: str = MANIFEST_NAME) -> Manifest:
    """Parse and validate the text of a plugin.yaml."""
    data = yaml_safe.load(text, source=source, max_bytes=MAX_MANIFEST_BYTES)
    try:
        return manifest_from_dict(data)
    except ManifestError as exc:
        if source:
            raise ManifestError(exc.field, exc.value, exc.allowed, source) from None
        raise


def scan_policy(manifest: Manifest, base: Policy | None = None) -> Policy:
    """The policy a plugin's sources are scanned with: its ``scan:`` section (warden's
    default policy without one), with ``allowed_imports`` allowed on top. Engine.load and
    ``warden scan --policy plugin.yaml`` both judge by it. With ``base`` (an engine's
    operator policy), ``base`` takes the place of warden's default: no section, or
    ``extends: default``, starts from it."""
    from warden.scan import Policy

    if base is None:
        start = Policy.default() if manifest.scan is None else manifest.scan
    elif manifest.scan_rules is None:
        start = base
    else:
        start = Policy.from_dict(manifest.scan_rules, base=base)
    return start.allow(modules=manifest.allowed_imports)


def read_manifest(path: str) -> bytes:
    """The bytes of the plugin.yaml at ``path`` (at most MAX_MANIFEST_BYTES + 1, so that the
    parser refuses an oversized one): a regular file, its last component not followed. A
    link, a FIFO, a device or a file over the cap is refused unread: the error never quotes
    what lies outside the plugin."""
    try:
        fd, st = files.open_regular(path)
    except files.NotRegular as exc:
        raise ManifestError("(file)", path, f"a regular {MANIFEST_NAME}, not {exc.kind}: "
                            "warden follows no links in plugin bundles and reads only "
                            "regular files", path) from None
    except OSError as exc:
        raise ManifestError("(file)", path, f"a readable {MANIFEST_NAME} ({exc.strerror})",
                            path) from exc
    with os.fdopen(fd, "rb") as f:
        if st.st_size > MAX_MANIFEST_BYTES:
            raise ManifestError("(document)", f"{st.st_size} bytes",
                                f"at most {MAX_MANIFEST_BYTES} bytes", path)
        return f.read(MAX_MANIFEST_BYTES + 1)


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read ``plugin.yaml`` from a plugin directory (or the file itself) and validate it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, MANIFEST_NAME)
    return parse_manifest(read_manifest(path), source=path)
