"""A plugin whose entry point does not load fails Engine.load with its own error, in real
sandboxes of the native provider; nothing of it is left running."""

from __future__ import annotations

import os

import pytest
import warden

from tests.plugins.test_plugins import make_plugin, native_ok


@pytest.fixture
def engine():
    native_ok()
    e = warden.Engine()
    yield e
    e.close()


def _load_fails(engine, d: str) -> warden.PluginError:
    with pytest.raises(warden.PluginError) as info:
        engine.load(d)
    assert engine.plugins == []
    assert engine.provider.list({"plugin": os.path.basename(d)}) == []
    return info.value


@pytest.mark.parametrize("pool", [{"min_workers": 1}, {"min_workers": 0}])
def test_an_entry_without_handle_fails_the_load(tmp_path, engine, pool):
    d = make_plugin(tmp_path, "nohandle", """
        def handler(action, payload):
            return payload
    """, pool=pool)
    err = _load_fails(engine, d)
    assert err.type == "EntryPointError"
    assert "plugin 'nohandle'" in err.message and d in err.message
    assert "defines no callable handle(action, payload)" in err.message
    assert "/plugin/src/main.py" in err.message


def test_a_handle_that_is_not_callable_fails_the_load(tmp_path, engine):
    err = _load_fails(engine, make_plugin(tmp_path, "notcallable", "handle = 3\n"))
    assert err.type == "EntryPointError" and "no callable handle" in err.message


def test_an_entry_that_raises_at_import_fails_the_load_with_its_traceback(tmp_path, engine):
    d = make_plugin(tmp_path, "raising", """
        SETTINGS = {}
        TIMEOUT = SETTINGS["timeout"]

        def handle(action, payload):
            return TIMEOUT
    """)
    err = _load_fails(engine, d)
    assert err.type == "KeyError"
    assert "importing entry point /plugin/src/main.py failed" in err.message
    assert 'line 3' in err.traceback and 'SETTINGS["timeout"]' in err.traceback


def test_a_missing_module_fails_the_load(tmp_path, engine):
    d = make_plugin(tmp_path, "missingdep", """
        import helpers_not_shipped

        def handle(action, payload):
            return helpers_not_shipped.run(payload)
    """, allowed_imports=["helpers_not_shipped"])
    err = _load_fails(engine, d)
    assert err.type == "ModuleNotFoundError"
    assert "helpers_not_shipped" in err.message


def test_an_entry_that_exits_at_import_fails_the_load(tmp_path, engine):
    err = _load_fails(engine, make_plugin(tmp_path, "exiting", "raise SystemExit(3)\n"))
    assert err.type == "SystemExit"


def test_a_good_plugin_still_loads_after_a_bad_one(tmp_path, engine):
    _load_fails(engine, make_plugin(tmp_path, "bad", "handle = None\n"))
    good = engine.load(make_plugin(tmp_path, "good", """
        def handle(action, payload):
            return payload
    """))
    assert good.call("echo", 7) == 7
