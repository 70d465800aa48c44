"""The pytest plugin and @isolated: a hypothesis property test over code with a planted crash
fails with the crash's verdict, shrunk to the smallest example, in an inner pytest run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.plugins.test_plugins import native_ok

PLANTED = '''
import ctypes, os
from hypothesis import given, settings, strategies as st
import warden
from warden.testing import isolated

def parse(data):
    if len(data) >= 3 and data[0] > 200:
        ctypes.string_at(0)        # the planted crash
    if len(data) >= 2 and data[-1] == 7:
        raise ValueError("seven")  # an ordinary bug, found the same way every time
    return len(data)

@settings(max_examples=3000, database=None)
@given(st.binary(max_size=16))
@isolated(limits=warden.Limits(wall_time_s=2, memory_mb=64))
def test_parse_crash(data):
    if len(data) >= 2 and data[-1] == 7:
        return
    parse(data)

@settings(max_examples=3000, database=None)
@given(st.binary(max_size=16))
@isolated(limits=warden.Limits(wall_time_s=2, memory_mb=64))
def test_parse_exception(data):
    if len(data) >= 3 and data[0] > 200:
        return
    parse(data)

@settings(max_examples=50, database=None)
@given(st.integers(0, 10))
@isolated(limits=warden.Limits(wall_time_s=1))
def test_passes(n):
    assert n >= 0
'''


def _inner(tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "test_planted.py").write_text(PLANTED)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    # Installed, warden's pytest11 entry point loads the plugin (that is what is tested then);
    # from a source tree, which has no entry point, it is named.
    named = [] if _entry_point_installed() else ["-p", "warden.testing.plugin"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *named,
         "-q", "-rf", "test_planted.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600)


def _entry_point_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.value.startswith("warden.testing")
               for ep in entry_points(group="pytest11"))


@pytest.mark.slow
def test_plugin_finds_and_shrinks_a_planted_crash(tmp_path):
    native_ok()
    out = _inner(tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "2 failed, 1 passed" in text, text
    # The crash: SIGSEGV, its verdict in the report, shrunk to the smallest input.
    assert "IsolatedCrash_" in text and "crash SIGSEGV" in text
    assert "data=b'\\xc9\\x00\\x00'" in text, text
    assert "warden verdict" in text
    # The exception crossed the boundary deterministically: no Flaky, shrunk as well.
    assert "Flaky" not in text
    assert "IsolatedException_" in text and "ValueError: seven" in text
    assert "data=b'\\x00\\x07'" in text, text
