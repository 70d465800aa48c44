"""What a plugin's workers run is what the scanner read at load: warden's snapshot of the
plugin directory (warden.plugins.bundle), in real sandboxes of the native provider."""

from __future__ import annotations

import os
import textwrap
import time

import pytest
import warden
from warden.plugins import bundle
from warden.providers.native import prepare

from tests.plugins.test_plugins import make_plugin, native_ok

ANSWER = """
    def handle(action, payload):
        return {answer!r}
"""
# What an edit slips in after the scan: the scanner would refuse it.
HOSTILE = """
    import os

    def handle(action, payload):
        return "edited: " + os.getcwd()
"""


@pytest.fixture
def engine():
    native_ok()
    e = warden.Engine()
    yield e
    e.close()


def _write_entry(d: str, code: str) -> None:
    with open(os.path.join(d, "src", "main.py"), "w") as f:
        f.write(textwrap.dedent(code))


def _wait_for_made_ahead() -> None:
    """Until the preparer has a sandbox ready and makes none: the next equal spec gets it."""
    prep = prepare.preparer()
    for _ in range(200):
        with prep._cond:
            if any(prep._ready.values()) and not any(prep._making.values()):
                return
        time.sleep(0.05)
    pytest.fail("no sandbox was made ahead within 10 s")


def test_an_edited_plugin_loaded_again_runs_its_new_code(tmp_path, engine):
    d = make_plugin(tmp_path, "edited", ANSWER.format(answer="old"))
    first = engine.load(d)
    assert first.call("which") == "old"
    # Its worker's end makes the next one of its spec ahead, the old entry imported.
    first.close()
    _wait_for_made_ahead()
    _write_entry(d, ANSWER.format(answer="new"))
    again = engine.load(d)
    assert again.call("which") == "new"
    assert again.digest != first.digest


def test_the_same_plugin_loaded_again_gets_the_worker_made_ahead(tmp_path, engine):
    d = make_plugin(tmp_path, "same", ANSWER.format(answer="same"))
    first = engine.load(d)
    made = {h.id for h in first.workers()}
    first.close()
    _wait_for_made_ahead()
    again = engine.load(d)
    assert again.digest == first.digest
    assert again.call("which") == "same"
    # The worker made ahead serves the equal spec: a new sandbox, not one of the old.
    assert {h.id for h in again.workers()} - made


def test_an_edit_between_the_scan_and_the_worker_start_never_runs(tmp_path, engine,
                                                                  monkeypatch):
    d = make_plugin(tmp_path, "raced", ANSWER.format(answer="scanned"))
    create = engine.provider.create

    def edit_then_create(spec, **kw):
        _write_entry(d, HOSTILE)
        return create(spec, **kw)

    monkeypatch.setattr(engine.provider, "create", edit_then_create)
    p = engine.load(d)
    assert p.call("which") == "scanned"


def test_workers_started_after_an_edit_run_the_scanned_code(tmp_path, engine):
    d = make_plugin(tmp_path, "recycled", ANSWER.format(answer="scanned"),
                    pool={"min_workers": 1, "max_workers": 1, "max_calls_per_worker": 1})
    p = engine.load(d)
    _write_entry(d, HOSTILE)
    # Every call retires its worker: each of these is served by a worker started after the
    # edit.
    assert [p.call("which") for _ in range(3)] == ["scanned"] * 3


def test_the_bytecode_cache_is_not_what_runs(tmp_path, engine):
    # A __pycache__ entry that Python would load without looking at the source (an
    # unchecked-hash .pyc) is left out of the snapshot: the scanned source runs.
    import py_compile

    d = make_plugin(tmp_path, "cached", ANSWER.format(answer="source"))
    evil = tmp_path / "evil.py"
    evil.write_text(textwrap.dedent(HOSTILE))
    cache = os.path.join(d, "src", "__pycache__")
    os.makedirs(cache)
    tag = __import__("sys").implementation.cache_tag
    py_compile.compile(str(evil), cfile=os.path.join(cache, f"main.{tag}.pyc"),
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert engine.load(d).call("which") == "source"


def test_a_link_in_the_plugin_is_refused_as_the_scanner_refuses_it(tmp_path, engine):
    # Whatever its name: a link is never copied, never followed, and fails the load.
    d = make_plugin(tmp_path, "linked", ANSWER.format(answer="x"))
    os.symlink("/etc/passwd", os.path.join(d, "src", "passwd"))
    with pytest.raises(warden.ScanRejected) as info:
        engine.load(d)
    [f] = info.value.findings
    assert (f.rule, f.filename) == ("file-unreadable", os.path.join(d, "src", "passwd"))
    assert "symbolic link" in f.message and "root:" not in str(info.value)
    assert engine.plugins == []


def test_a_linked_manifest_is_refused(tmp_path, engine):
    d = make_plugin(tmp_path, "linkedyaml", ANSWER.format(answer="x"))
    os.rename(os.path.join(d, "plugin.yaml"), os.path.join(tmp_path, "real.yaml"))
    os.symlink(os.path.join(tmp_path, "real.yaml"), os.path.join(d, "plugin.yaml"))
    with pytest.raises(warden.ManifestError, match="not a link"):
        engine.load(d)


def test_the_snapshot_is_read_only_to_the_plugin_and_removed_at_close(tmp_path, engine):
    d = make_plugin(tmp_path, "snap", """
        def handle(action, payload):
            with open("src/main.py", "a") as f:
                f.write("# changed")
    """)
    p = engine.load(d)
    snap = p._snapshot
    assert snap.root == os.path.realpath(d) and os.path.isdir(snap.path)
    with pytest.raises(warden.PluginError, match="Read-only file system|Permission denied"):
        p.call("write")
    p.close()
    # Kept for a load of the same contents, until newer unused snapshots push it out.
    for i in range(bundle.KEEP_UNUSED):
        other = make_plugin(tmp_path, f"other{i}", ANSWER.format(answer=i))
        engine.load(other).close()
    assert not os.path.exists(snap.path)
