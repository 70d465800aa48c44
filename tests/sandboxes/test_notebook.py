"""Sandbox.run_code: notebook cells in named contexts of a real sandbox, state kept from cell
to cell, results, rich display, errors, timeouts that keep the context, and resets."""

from __future__ import annotations

import pytest
import warden
from warden import InvalidArgument, ProtocolError

from tests.plugins.test_plugins import native_ok


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=30)) as box:
        yield box


def test_state_persists_per_context(sb):
    e = sb.run_code("x = 41\nprint('hi')\nx + 1")
    assert (e.stdout, e.result, e.error) == ("hi\n", "42", None)
    assert sb.run_code("x * 2").result == "82"
    assert sb.run_code("'x' in dir()", context="other").result == "False"
    assert sb.run_code("x = 'mine'", context="other").result is None
    assert sb.run_code("x").result == "41"
    assert sb.contexts() == ["default", "other"]
    sb.reset_context("other")
    assert sb.contexts() == ["default"]
    assert sb.run_code("'x' in dir()", context="other").result == "False"


def test_errors_and_what_was_printed_before(sb):
    e = sb.run_code("import sys\nprint('before')\nprint('warn', file=sys.stderr)\n1/0")
    assert e.stdout == "before\n" and e.stderr == "warn\n"
    assert e.error is not None and e.error.name == "ZeroDivisionError"
    assert "1/0" in e.error.traceback or "<cell>" in e.error.traceback
    # Output written straight to the descriptors is the cell's too.
    e = sb.run_code("import os\nos.write(1, b'raw\\n')\nos.system('echo from-a-child')\n5")
    assert e.stdout == "raw\nfrom-a-child\n" and e.result == "5"


def test_rich_values_come_as_mime_bundles(sb):
    e = sb.run_code("class Table:\n"
                    "    def _repr_html_(self):\n        return '<table></table>'\n"
                    "    def _repr_png_(self):\n        return b'\\x89PNG'\n"
                    "    def __repr__(self):\n        return 'Table()'\n"
                    "Table()")
    assert e.result == "Table()"
    assert e.display == [{"text/plain": "Table()", "text/html": "<table></table>",
                          "image/png": "iVBORw=="}]


def test_a_cell_past_its_timeout_is_interrupted_and_the_context_kept(sb):
    sb.run_code("kept = 'yes'")
    e = sb.run_code("while True:\n    pass", timeout=1)
    assert e.error is not None and e.error.name == "TimeoutError"
    assert "KeyboardInterrupt" in e.error.traceback
    assert sb.run_code("kept").result == "'yes'"


def test_a_cell_that_ignores_the_interrupt_loses_its_context_not_the_sandbox(sb):
    sb.run_code("kept = 1")
    e = sb.run_code("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                    "while True:\n    pass", timeout=1)
    assert e.error is not None and e.error.name == "ContextLost"
    assert sb.run_code("'kept' in dir()").result == "False"  # a fresh context
    assert sb.exec(["echo", "ok"]).stdout == b"ok\n"


def test_a_cell_that_exits_loses_its_context(sb):
    e = sb.run_code("raise SystemExit(3)")
    assert e.error is not None and e.error.name == "ContextLost"
    assert sb.run_code("1 + 1").result == "2"


def test_a_forged_answer_is_refused_and_the_context_restarted(sb):
    forged = ("import sys, os\n"
              "os.write(1, sys.argv[1].encode() + b'{\"stdout\": 5}\\n')\n"
              "import time\ntime.sleep(0.5)")
    with pytest.raises(ProtocolError):
        sb.run_code(forged)
    assert sb.run_code("2 + 2").result == "4"


def test_arguments_are_checked(sb):
    with pytest.raises(InvalidArgument):
        sb.run_code("1", context="")
    with pytest.raises(InvalidArgument):
        sb.run_code(b"1")  # type: ignore[arg-type]
