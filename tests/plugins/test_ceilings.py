"""Operator ceilings (warden.plugins.ceilings): a manifest cannot grant itself more than the
engine's operator allows. The check itself, then Engine.load with real sandboxes."""

from __future__ import annotations

import pytest
import warden
from warden import Ceilings, InvalidArgument, ManifestError, Policy
from warden.plugins import ceilings
from warden.plugins.manifest import parse_manifest

from tests.plugins.test_plugins import make_plugin, native_ok


def manifest(text: str = ""):
    return parse_manifest("name: p\n" + text)


# ---------------------------------------------------------------------------------------------
# Limits


@pytest.mark.parametrize("ceiling, text, field, value", [
    ({"memory_mb": 256}, "resources: {max_memory_mb: 512}", "resources.max_memory_mb", 512),
    ({"pids": 16}, "resources: {max_pids: 17}", "resources.max_pids", 17),
    ({"cpus": 0.5}, "resources: {cpus: 2}", "resources.cpus", 2.0),
    ({"timeout_seconds": 1}, "resources: {timeout_seconds: 1.5}",
     "resources.timeout_seconds", 1.5),
    ({"disk_mb": 10}, "resources: {max_disk_mb: 11}", "resources.max_disk_mb", 11),
    ({"workers": 2}, "pool: {max_workers: 3}", "pool.max_workers", 3),
    ({"warm_workers": 0}, "pool: {min_workers: 1}", "pool.min_workers", 1),
    ({"rate_burst": 10}, "resources: {rate_limit: {calls: 11, period_seconds: 60}}",
     "resources.rate_limit.calls", 11),
])
def test_a_manifest_over_a_ceiling_is_refused_naming_field_value_and_ceiling(
        ceiling, text, field, value):
    m = manifest(text)
    for given in (ceiling, Ceilings(**ceiling)):
        with pytest.raises(ManifestError) as info:
            ceilings.check(m, Ceilings.of(given), source="/p/plugin.yaml")
        err = info.value
        assert (err.field, err.value) == (field, value)
        [(name, most)] = ceiling.items()
        assert f"at most {most:g}" in err.allowed and f"max_limits.{name}" in err.allowed
        assert str(err).startswith("/p/plugin.yaml: ")


def test_a_manifest_at_the_ceilings_passes():
    at = Ceilings(memory_mb=128, pids=32, cpus=1, timeout_seconds=5, disk_mb=100, workers=4,
                  warm_workers=1, rate_calls_per_second=100 / 60, rate_burst=100)
    ceilings.check(manifest(), at)           # the defaults, exactly at every ceiling
    ceilings.check(manifest(), Ceilings())   # no ceiling at all
    ceilings.check(manifest(), None)


def test_the_rate_ceiling_bounds_calls_per_second_and_refuses_no_rate_limit():
    at_most = Ceilings(rate_calls_per_second=10)
    ceilings.check(manifest("resources: {rate_limit: {calls: 100, period_seconds: 10}}"),
                   at_most)
    with pytest.raises(ManifestError) as info:
        ceilings.check(manifest("resources: {rate_limit: {calls: 101, period_seconds: 10}}"),
                       at_most)
    assert info.value.field == "resources.rate_limit"
    assert info.value.value == "101 calls per 10s" and "at most 10 calls per second" in str(
        info.value)
    with pytest.raises(ManifestError) as info:
        ceilings.check(manifest("resources: {rate_limit: null}"), at_most)
    assert (info.value.field, info.value.value) == ("resources.rate_limit", None)


@pytest.mark.parametrize("bad", [
    {"memory": 1}, {"memory_mb": 0}, {"memory_mb": 1.5}, {"cpus": float("nan")},
    {"pids": True}, {"workers": -1}, {"warm_workers": -1}, {"timeout_seconds": "5"}, [1],
])
def test_invalid_ceilings_are_an_invalid_argument(bad):
    with pytest.raises(InvalidArgument):
        Ceilings.of(bad)


# ---------------------------------------------------------------------------------------------
# The scanner policy


OPERATOR = Policy.default().forbid(modules=["json"])


def test_an_operator_policy_forbids_what_a_manifest_may_not_allow():
    # json is in allowed_imports by default: on this engine, listing it is relaxing.
    with pytest.raises(ManifestError) as info:
        ceilings.check(manifest(), policy=OPERATOR)
    assert (info.value.field, info.value.value) == ("allowed_imports", "json")
    assert "forbids module 'json'" in info.value.allowed
    policy = ceilings.check(manifest("allowed_imports: []"), policy=OPERATOR)
    assert policy.module_forbidden("json") and policy.module_forbidden("os")


def test_relaxable_lists_what_a_manifest_may_allow():
    relax = ceilings.relaxable_map({"modules": ["json", "os"], "builtins": ["input"]})
    m = manifest("allowed_imports: [json, os.path]\nscan: {allow_builtins: [input]}")
    policy = ceilings.check(m, policy=OPERATOR, relaxable=relax)
    assert not policy.module_forbidden("json") and not policy.module_forbidden("os.path")
    assert "input" not in policy.forbidden_builtins
    # What relaxable does not list stays the operator's.
    assert policy.module_forbidden("sys") and "eval" in policy.forbidden_builtins


@pytest.mark.parametrize("text, field, value", [
    ("allowed_imports: [os.path]", "allowed_imports", "os.path"),
    ("scan: {allow_modules: [subprocess]}", "scan.allow_modules", "subprocess"),
    ("scan: {allow_builtins: [eval]}", "scan.allow_builtins", "eval"),
    ("scan: {allow_attributes: [__globals__]}", "scan.allow_attributes", "__globals__"),
    ("scan: {allow_names: [__builtins__]}", "scan.allow_names", "__builtins__"),
    ("scan: {extends: empty}", "scan.extends", "empty"),
])
def test_relaxing_beyond_the_operator_is_refused_naming_the_field(text, field, value):
    with pytest.raises(ManifestError) as info:
        ceilings.check(manifest(text), policy=Policy.default(),
                       relaxable=ceilings.relaxable_map({"modules": ["json"]}))
    assert (info.value.field, info.value.value) == (field, value)


def test_the_operator_policy_replaces_the_default_and_a_section_extends_it():
    # A manifest that says nothing of json is scanned with the operator's ban on it.
    m = manifest("allowed_imports: []\nscan: {forbid_modules: [csv]}")
    policy = ceilings.check(m, policy=OPERATOR)
    assert policy.module_forbidden("json") and policy.module_forbidden("csv")
    # Tightening is always allowed, relaxing what the operator does not forbid too.
    loose = Policy.default().allow(modules=["os"])
    assert not ceilings.check(manifest("allowed_imports: [os]"), policy=loose).module_forbidden(
        "os")


def test_relaxable_alone_bounds_the_default_policy_and_neither_bounds_nothing():
    m = manifest("scan: {allow_builtins: [eval]}")
    assert "eval" not in ceilings.check(m).forbidden_builtins
    with pytest.raises(ManifestError):
        ceilings.check(m, relaxable=ceilings.relaxable_map({}))
    assert "eval" not in ceilings.check(
        m, relaxable=ceilings.relaxable_map({"builtins": ["eval"]})).forbidden_builtins


def test_allowing_every_module_is_relaxing_what_the_operator_forbids_by_star():
    star = Policy.default().forbid(modules=["*"]).allow(modules=["json"])
    with pytest.raises(ManifestError) as info:
        ceilings.check(manifest("scan: {allow_modules: ['*']}"), policy=star)
    assert (info.value.field, info.value.value) == ("scan.allow_modules", "*")
    ceilings.check(manifest(), policy=star)


@pytest.mark.parametrize("bad", [["modules"], {"module": ["os"]}, {"modules": "os"},
                                 {"builtins": ["not a name"]}])
def test_invalid_relaxable_is_an_invalid_argument(bad):
    with pytest.raises(InvalidArgument):
        ceilings.relaxable_map(bad)


# ---------------------------------------------------------------------------------------------
# Engine.load, real sandboxes


ECHO = """
    import json

    def handle(action, payload):
        return json.dumps(payload)
"""


@pytest.fixture
def engine():
    native_ok()
    e = warden.Engine(max_limits={"memory_mb": 64, "workers": 2},
                      policy=Policy.default().forbid(modules=["csv"]),
                      relaxable={"modules": ["json"]})
    yield e
    e.close()


def test_engine_load_refuses_a_manifest_over_its_ceilings_and_starts_nothing(tmp_path, engine):
    d = make_plugin(tmp_path, "greedy", ECHO, resources={"max_memory_mb": 128})
    with pytest.raises(ManifestError) as info:
        engine.load(d)
    assert (info.value.field, info.value.value) == ("resources.max_memory_mb", 128)
    assert "at most 64" in str(info.value) and f"{d}/plugin.yaml" in str(info.value)
    d = make_plugin(tmp_path, "wide", ECHO, resources={"max_memory_mb": 64},
                    pool={"max_workers": 3})
    with pytest.raises(ManifestError, match="pool.max_workers"):
        engine.load(d)
    assert engine.plugins == []


def test_engine_load_runs_a_manifest_within_its_ceilings(tmp_path, engine):
    d = make_plugin(tmp_path, "modest", ECHO, resources={"max_memory_mb": 64},
                    pool={"max_workers": 2})
    p = engine.load(d)
    assert p.call("x", {"a": 1}) == '{"a": 1}'
    assert p.workers()[0].spec.limits.memory_mb == 64


def test_engine_load_scans_with_the_operator_policy(tmp_path, engine):
    csv_user = """
        import csv

        def handle(action, payload):
            return csv.QUOTE_ALL
    """
    d = make_plugin(tmp_path, "csvuser", csv_user, resources={"max_memory_mb": 64},
                    pool={"max_workers": 2})
    # warden's default policy allows csv; this engine's operator does not.
    with pytest.raises(warden.ScanRejected) as info:
        engine.load(d)
    assert [f.rule for f in info.value.findings] == ["import-forbidden"]
    # Nor may the manifest allow it for itself: csv is not relaxable here.
    d = make_plugin(tmp_path, "csvallow", csv_user, resources={"max_memory_mb": 64},
                    pool={"max_workers": 2}, allowed_imports=["json", "csv"])
    with pytest.raises(ManifestError) as info:
        engine.load(d)
    assert (info.value.field, info.value.value) == ("allowed_imports", "csv")
    assert engine.plugins == []


def test_engine_arguments_are_checked():
    with pytest.raises(InvalidArgument):
        warden.Engine(max_limits={"memory_mb": -1})
    with pytest.raises(InvalidArgument):
        warden.Engine(policy={"forbid_modules": ["os"]})
    with pytest.raises(InvalidArgument):
        warden.Engine(relaxable={"modules": "os"})
