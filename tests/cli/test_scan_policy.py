"""``warden scan --policy`` with a plugin reaches the verdict Engine.load reaches: the same
findings, under the plugin's own policy (its scan: section or the default, allowed_imports
allowed on top). Engine.load runs in real sandboxes of the native provider."""

from __future__ import annotations

import json
import os

import pytest
import warden
from warden.cli import main as warden_cli

from tests.plugins.test_plugins import make_plugin, native_ok

USES_OS = """
    import os

    def handle(action, payload):
        return os.getcwd()
"""
USES_JSON = """
    import json

    def handle(action, payload):
        return json.dumps(payload)
"""

# (name, code, manifest fields): plugins whose verdicts both ways must agree.
PLUGINS = [
    ("os-allowed", USES_OS, {"allowed_imports": ["os"]}),
    ("os-not-allowed", USES_OS, {}),
    ("json-default", USES_JSON, {}),
    ("json-forbidden", USES_JSON, {"scan": {"forbid_modules": ["json"]}, "allowed_imports": []}),
    ("os-allowed-over-scan", USES_OS, {"scan": {"forbid_builtins": ["print"]},
                                       "allowed_imports": ["os"]}),
    ("empty-policy", USES_OS, {"scan": {"extends": "empty"}}),
]


def _cli(capsys, policy: str, path: str) -> tuple[int, set]:
    code = warden_cli(["scan", "--json", "--policy", policy, path])
    out = json.loads(capsys.readouterr().out)
    return code, {(os.path.basename(f), x["rule"], x["line"]) for f, xs in out.items()
                  for x in xs}


def _engine(engine, d: str) -> set:
    try:
        engine.load(d).close()
    except warden.ScanRejected as exc:
        return {(os.path.basename(f.filename), f.rule, f.line) for f in exc.findings}
    return set()


@pytest.fixture
def engine():
    native_ok()
    e = warden.Engine()
    yield e
    e.close()


@pytest.mark.parametrize(("name", "code", "fields"), PLUGINS, ids=[p[0] for p in PLUGINS])
def test_the_cli_and_engine_load_agree(tmp_path, capsys, engine, name, code, fields):
    d = make_plugin(tmp_path, name, code, **fields)
    src = os.path.join(d, "src")
    expected = _engine(engine, d)
    for policy in (os.path.join(d, "plugin.yaml"), d):
        status, found = _cli(capsys, policy, src)
        assert found == expected, policy
        assert status == (1 if expected else 0)


def test_a_manifest_under_another_name_is_a_plugin_policy(tmp_path, capsys):
    d = make_plugin(tmp_path, "renamed", USES_OS, allowed_imports=["os"])
    other = tmp_path / "renamed.yaml"
    other.write_bytes((tmp_path / "renamed" / "plugin.yaml").read_bytes())
    assert _cli(capsys, str(other), os.path.join(d, "src")) == (0, set())


def test_a_policy_file_still_works(tmp_path, capsys):
    d = make_plugin(tmp_path, "pol", USES_OS)
    policy = tmp_path / "policy.yaml"
    policy.write_text("allow_modules: [os]\n")
    assert _cli(capsys, str(policy), d) == (0, set())


def test_an_invalid_manifest_names_its_field(tmp_path, capsys):
    d = make_plugin(tmp_path, "badpol", USES_OS, allowed_imports="os")
    assert warden_cli(["scan", "--policy", os.path.join(d, "plugin.yaml"), d]) == 2
    err = capsys.readouterr().err
    assert "allowed_imports" in err and "a list of module names" in err
