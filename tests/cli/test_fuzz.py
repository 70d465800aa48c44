"""`warden fuzz`: an atheris target fuzzed with each input in a sandboxed fork, run as a user
runs it. libFuzzer's comparison tracing must carry the magic of a small parser back from the
sandbox for the planted bug to be found at all; each run is bounded by --time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.cli.test_cli import PYTHON_DIR, warden_cli
from tests.conftest import require
from tests.plugins.test_plugins import native_ok

PARSER = '''
import sys

import atheris


def parse(data: bytes) -> int:
    if len(data) < 6:
        return 0
    if data[:4] == b"WRDN":          # a record with the magic: its length byte is trusted
        body = data[5:5 + data[4]]
        return body[data[4] - 1]     # IndexError when the length byte lies
    return len(data)


def TestOneInput(data: bytes) -> None:
    parse(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
'''


@pytest.fixture
def fuzzable():
    native_ok()
    try:
        import atheris  # noqa: F401
    except ImportError:
        require(False, "warden fuzz needs atheris (the dev extras)")


def write(tmp_path, name: str, text: str) -> str:
    """The target in a directory of its own that the sandbox's user may read (it is bound
    at /setup; pytest's tmp_path is the owner's only)."""
    d = tmp_path / "target"
    d.mkdir(mode=0o755, exist_ok=True)
    d.chmod(0o755)
    path = d / name
    path.write_text(text)
    path.chmod(0o644)
    return str(path)


def test_finds_saves_and_dedupes_a_planted_crash(fuzzable, tmp_path):
    target = write(tmp_path, "parser.py", PARSER)
    crashes, corpus = tmp_path / "crashes", tmp_path / "corpus"
    r = warden_cli("fuzz", target, "--time", "40", "--seed", "7", "--crashes", str(crashes),
                   "--corpus", str(corpus), "--max-len", "64", "--timeout", "2",
                   "--memory", "64M")
    out = r.stdout.decode()
    assert r.returncode == 1, (out, r.stderr.decode()[-2000:])
    # One bucket, so one input and one verdict kept however often it was hit.
    kept = sorted(os.listdir(crashes))
    assert len(kept) == 2 and kept[1] == kept[0] + ".json"
    data = (crashes / kept[0]).read_bytes()
    verdict = json.loads((crashes / kept[1]).read_text())
    assert data[:4] == b"WRDN"
    assert verdict["outcome"] == "exception" and verdict["exception"]["type"] == "IndexError"
    assert verdict["input"] == kept[0] and verdict["bucket"] in kept[0]
    assert "parser.py" in verdict["exception"]["traceback"]
    # The table: a header and one row naming the bucket, its outcome, type, count and file.
    table = out.splitlines()
    row = next(line for line in table if line.startswith(verdict["bucket"]))
    assert row.split()[1:3] == ["exception", "IndexError"]
    assert int(row.split()[3]) >= 1 and row.split()[4] == kept[0]
    assert table[1].split()[:3] == ["bucket", "outcome", "signal/exception"]
    # libFuzzer kept what it learnt in the corpus, to resume from.
    assert os.listdir(corpus)


def test_a_crash_by_signal_is_kept_with_its_signal(fuzzable, tmp_path):
    target = write(tmp_path, "t.py", "import os\n\ndef TestOneInput(data):\n"
                   "    if data[:3] == b'ABR':\n        os.abort()\n")
    crashes = tmp_path / "crashes"
    r = warden_cli("fuzz", target, "--time", "30", "--seed", "3", "--crashes", str(crashes))
    assert r.returncode == 1, r.stderr.decode()[-2000:]
    (kept,) = [n for n in os.listdir(crashes) if n.endswith(".json")]
    verdict = json.loads((crashes / kept).read_text())
    assert verdict["outcome"] == "crash" and verdict["what"] == "SIGABRT"
    assert "SIGABRT" in r.stdout.decode()


def test_nothing_found_is_status_0_and_an_unloadable_target_125(fuzzable, tmp_path):
    ok = write(tmp_path, "ok.py", "def TestOneInput(data):\n    return len(data)\n")
    r = warden_cli("fuzz", ok, "--time", "3", "--crashes", str(tmp_path / "c1"))
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert b"no failing input" in r.stdout and not os.listdir(tmp_path / "c1")
    bad = write(tmp_path, "bad.py", "x = 1\n")
    r = warden_cli("fuzz", bad, "--time", "3", "--crashes", str(tmp_path / "c2"))
    assert r.returncode == 125 and b"TestOneInput" in r.stderr


def test_a_missing_target_is_a_usage_error(tmp_path):
    r = warden_cli("fuzz", str(tmp_path / "nope.py"))
    assert r.returncode == 2 and b"no such file" in r.stderr


def test_ctrl_c_ends_the_jobs_and_still_prints_what_was_found(fuzzable, tmp_path):
    target = write(tmp_path, "ok.py", "def TestOneInput(data):\n    return len(data)\n")
    environ = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    proc = subprocess.Popen([sys.executable, "-m", "warden", "fuzz", target, "--time", "3600",
                             "--crashes", str(tmp_path / "c")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=environ)
    try:
        # Once the job runs inputs, interrupt the command alone.
        time.sleep(8)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # far before the hour it was given
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"interrupted" in err and b"no failing input" in out
    assert b" inputs in " in out
