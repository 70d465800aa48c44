"""plugin.yaml parsing and validation."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warden import Limits, ManifestError
from warden.plugins.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    PoolSettings,
    RateLimit,
    Resources,
    RetrySettings,
    load_manifest,
    manifest_from_dict,
    parse_manifest,
)

FULL = """\
name: transform
version: 1.0.0
entry_point: src/main.py
resources:
  max_memory_mb: 128
  max_disk_mb: 100
  timeout_seconds: 5
  max_pids: 32
  cpus: 1.0
  rate_limit: {calls: 100, period_seconds: 60}
network: none
allowed_imports: [json]
env: {MODE: fast}
pool: {min_workers: 1, max_workers: 4, max_calls_per_worker: 100000, idle_seconds: 300}
retry: {attempts: 1, backoff_seconds: 0.05, idempotent_actions: []}
"""


def test_the_issue_example_parses_to_the_defaults_plus_env():
    m = parse_manifest(FULL)
    assert m == dataclasses.replace(Manifest(name="transform"), env={"MODE": "fast"})
    assert m.resources == Resources(128, 100, 5.0, 32, 1.0, RateLimit(100, 60.0))
    assert m.pool == PoolSettings(1, 4, 100_000, 300.0)
    assert m.retry == RetrySettings(1, 0.05, ())
    assert dict(m.env) == {"MODE": "fast"}


def test_only_name_is_required():
    m = parse_manifest("name: tiny\n")
    assert (m.version, m.entry_point, m.network, m.allowed_imports) == \
        ("1.0.0", "src/main.py", "none", ("json",))
    assert dict(m.env) == {}
    with pytest.raises(ManifestError) as info:
        parse_manifest("version: 1.0.0\n")
    assert info.value.field == "name"


def test_to_limits():
    m = parse_manifest("name: t\nresources: {max_memory_mb: 64, max_pids: 8, cpus: 0.5, "
                       "timeout_seconds: 2.5, max_disk_mb: 10}\n")
    assert m.to_limits() == Limits(memory_mb=64, pids=8, cpus=0.5, wall_time_s=2.5, disk_mb=10)


def test_manifest_is_frozen():
    m = parse_manifest(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.env["MODE"] = "slow"  # type: ignore[index]
    hash(m)


def test_rate_limit_null_means_unlimited():
    assert parse_manifest("name: t\nresources: {rate_limit: null}\n").resources.rate_limit is None


@pytest.mark.parametrize("text, field", [
    ("name: t\nnetwork: host\n", "network"),
    ("name: t\nbogus: 1\n", "bogus"),
    ("name: t\nresources: {max_memory: 1}\n", "resources.max_memory"),
    ("name: t\nresources: {max_memory_mb: 2}\n", "resources.max_memory_mb"),
    ("name: t\nresources: {max_memory_mb: 99999999}\n", "resources.max_memory_mb"),
    ("name: t\nresources: {max_memory_mb: 12.5}\n", "resources.max_memory_mb"),
    ("name: t\nresources: {max_memory_mb: true}\n", "resources.max_memory_mb"),
    ("name: t\nresources: {timeout_seconds: -1}\n", "resources.timeout_seconds"),
    ("name: t\nresources: {timeout_seconds: .inf}\n", "resources.timeout_seconds"),
    ("name: t\nresources: {cpus: .nan}\n", "resources.cpus"),
    ("name: t\nresources: {max_pids: 0}\n", "resources.max_pids"),
    ("name: t\nresources: {rate_limit: {calls: 0}}\n", "resources.rate_limit.calls"),
    ("name: t\nresources: {rate_limit: {period_seconds: 0}}\n",
     "resources.rate_limit.period_seconds"),
    ("name: t\nresources: {rate_limit: {calls: 1, burst: 2}}\n", "resources.rate_limit.burst"),
    ("name: t\npool: {min_workers: 5, max_workers: 2}\n", "pool.min_workers"),
    ("name: t\npool: {max_workers: 0}\n", "pool.max_workers"),
    ("name: t\nretry: {attempts: 0}\n", "retry.attempts"),
    ("name: t\nretry: {idempotent_actions: [a, a]}\n", "retry.idempotent_actions"),
    ("name: t\nretry: {idempotent_actions: [[x]]}\n", "retry.idempotent_actions[0]"),
    ("name: t\nentry_point: ../../etc/passwd.py\n", "entry_point"),
    ("name: t\nentry_point: /abs/main.py\n", "entry_point"),
    ("name: t\nentry_point: src/main.sh\n", "entry_point"),
    ("name: t\nallowed_imports: [os; rm]\n", "allowed_imports[0]"),
    ("name: t\nallowed_imports: json\n", "allowed_imports"),
    ("name: ../escape\n", "name"),
    ("name: [t]\n", "name"),
    ("name: t\nversion: 2024-01-01\n", "version"),
    ("name: t\nversion: 1.5\n", "version"),
    ("name: t\nenv: [A]\n", "env"),
    ("name: t\nenv: {A: [1]}\n", "env.A"),
    ("name: t\nenv: {1A: x}\n", "env"),
    ("name: t\nimage: 'a b'\n", "image"),
    ("name: t\nimage: [x]\n", "image"),
    ("name: t\nscan: [x]\n", "scan"),
    ("name: t\nscan: {forbid_modules: 5}\n", "scan.forbid_modules"),
    ("name: t\nscan: {allow_builtins: {eval: 1}}\n", "scan.allow_builtins"),
    ("name: t\nscan: {package: 3}\n", "scan.package"),
    ("name: t\nscan: {extends: none}\n", "scan.extends"),
    ("name: t\nscan: {bogus: 1}\n", "scan.bogus"),
])
def test_bad_fields_name_field_value_and_what_is_allowed(text, field):
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    err = info.value
    assert err.field == field
    assert err.allowed
    assert field in str(err) and "allowed" in str(err)


def test_image_and_scan_policy():
    m = parse_manifest("name: t\nimage: python:3.11-slim\n"
                       "scan: {forbid_modules: [requests], allow_builtins: [input]}\n")
    assert m.image == "python:3.11-slim"
    p = m.scan
    assert "requests" in p.forbidden_modules and "input" not in p.forbidden_builtins
    assert parse_manifest("name: t\n").image is None and parse_manifest("name: t\n").scan is None


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "ld_audit", "PYTHONPATH",
                                  "PYTHONSTARTUP", "PYTHONHOME", "PATH", "HOME", "TMPDIR",
                                  "WARDEN_MEMORY_MB", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES",
                                  "OMP_NUM_THREADS", "BASH_ENV"])
def test_env_cannot_override_limits_or_loading(name):
    with pytest.raises(ManifestError) as info:
        parse_manifest(f"name: t\nenv: {{{name}: x}}\n")
    assert info.value.field == f"env.{name}"
    assert "reserved" in info.value.allowed


def test_env_values():
    m = parse_manifest("name: t\nenv: {MODE: fast, LEVEL: 3}\n")
    assert dict(m.env) == {"MODE": "fast", "LEVEL": "3"}


BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
name: t
"""


@pytest.mark.parametrize("text, what", [
    (BOMB, "anchor"),
    ("name: &n t\n", "anchor"),
    ("name: !!python/object/apply:os.system [true]\n", "tag"),
    ("name: !!binary aGk=\n", "tag"),
    ("name: t\nname: u\n", "given twice"),
    ("name: t\nresources: {cpus: 1, cpus: 2}\n", "given twice"),
    ("{\"\": 1, \"\": 2, name: t}\n", "given twice"),
    ("name: t\n? [a]\n: 1\n", "non-scalar"),
    ("name: t\n---\nname: u\n", "several"),
    ("name: t\nx: " + "[" * 40 + "]" * 40 + "\n", "nesting"),
    ("name: t\n" + "\n".join(f"k{i}: 1" for i in range(6000)) + "\n", "nodes"),
    ("name: [unclosed\n", "line"),
    ("- just\n- a list\n", "mapping"),
    ("", "mapping"),
])
def test_hostile_yaml_is_refused(text, what):
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    assert what in str(info.value)
    assert info.value.field and info.value.allowed


def test_size_cap_and_encoding(tmp_path):
    big = "name: t\n#" + "x" * MAX_MANIFEST_BYTES + "\n"
    with pytest.raises(ManifestError, match="at most"):
        parse_manifest(big)
    (tmp_path / "plugin.yaml").write_text(big)
    with pytest.raises(ManifestError, match="at most"):
        load_manifest(tmp_path)
    with pytest.raises(ManifestError, match="UTF-8"):
        parse_manifest(b"name: \xff\n")


def test_load_manifest_from_directory_and_missing(tmp_path):
    (tmp_path / "plugin.yaml").write_text(FULL)
    assert load_manifest(tmp_path).name == "transform"
    assert load_manifest(tmp_path / "plugin.yaml").name == "transform"
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "nowhere")
    assert "readable" in info.value.allowed
    with pytest.raises(ManifestError) as info:
        (tmp_path / "plugin.yaml").write_text("name: t\nbogus: 1\n")
        load_manifest(tmp_path)
    assert str(tmp_path) in str(info.value)


# Random data shaped like a manifest: the validator raises ManifestError or returns a Manifest.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["name", "version", "entry_point", "resources", "network",
                               "allowed_imports", "env", "pool", "retry", "max_memory_mb",
                               "calls", "rate_limit", "min_workers", "attempts", "PATH",
                               "idempotent_actions", "timeout_seconds", "cpus", "image",
                               "scan", "forbid_modules", "allow_builtins", "package",
                               "extends"])
manifest_like = st.recursive(
    json_values,
    lambda inner: st.dictionaries(field_names | st.text(max_size=8), inner, max_size=6),
    max_leaves=20,
)


@given(manifest_like)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_data_only_ever_raises_manifest_error(data):
    try:
        m = manifest_from_dict(data)
    except ManifestError as exc:
        assert exc.field and exc.allowed
        return
    assert isinstance(m, Manifest)
    assert isinstance(m.to_limits(), Limits)


@given(st.dictionaries(field_names, json_values, max_size=9).map(lambda d: {"name": "t", **d}))
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_yaml_documents_only_ever_raise_manifest_error(data):
    text = yaml.safe_dump(data)
    try:
        m = parse_manifest(text)
    except ManifestError:
        return
    assert m.name == "t"
    m.to_limits()


@given(st.text(max_size=300))
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_text_only_ever_raises_manifest_error(text):
    try:
        m = parse_manifest(text)
    except ManifestError as exc:
        assert exc.field and exc.allowed
    else:
        assert isinstance(m, Manifest) and m.name
