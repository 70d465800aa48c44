"""`warden demo` end to end with few records: the push, the large payload, every protection
biting with its named error, the engine serving after each, and the closing table."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from warden.cli import demo

from tests.plugins.test_plugins import native_ok

PROTECTIONS = {
    "memory bomb": "MemoryLimitExceeded",
    "disk filler": "DiskQuotaExceeded",
    "infinite loop": "TimeoutExceeded",
    "fork bomb": "PidsLimitExceeded",
    "read a host file": "FileNotFoundError",
    "socket (no allowance)": "ScanRejected",
    "socket to a host port": "ConnectionRefusedError",
}


def test_demo_shows_every_protection_and_the_table():
    native_ok()
    out, err = io.StringIO(), io.StringIO()
    assert demo.main(records=3000, batch=700, out=out, err=err) == 0
    text = out.getvalue()
    lines = text.splitlines()
    for label, named in PROTECTIONS.items():
        line = next(i for i, ln in enumerate(lines) if ln.strip().startswith(label))
        assert "refused" in lines[line] and named in lines[line], lines[line]
        assert "next call: ok" in lines[line + 1], lines[line + 1]
    assert "by the scanner" in text and "by the kernel" in text
    assert "over the frame cap" in text and "ok" in text
    table = dict(ln.split("  ", 1) for ln in lines
                 if ln and not ln.startswith((" ", "-", "warden", "pushing", "large",
                                              "protections (")))
    assert table["records pushed"].strip() == "3,000 in batches of 700"
    assert table["throughput"].strip().endswith("records/s")
    assert table["warm call p50"].strip().endswith("µs")
    assert table["warm call p99"].strip().endswith("µs")
    assert table["protections held"].strip() == "7/7"
    assert table["served after each"].strip() == "7/7"
    # The progress bar: plain text redrawn with carriage returns, ending at the total.
    progress = err.getvalue()
    assert "\r" in progress and "3,000/3,000 records" in progress


def test_cli_runs_the_demo():
    native_ok()
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(demo.__file__)))))
    proc = subprocess.run([sys.executable, "-m", "warden", "demo", "--records", "1000",
                           "--batch", "250"], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "protections held   7/7" in proc.stdout
    assert "1,000/1,000 records" in proc.stderr


def test_bad_arguments():
    err = io.StringIO()
    assert demo.main(records=0, batch=10, out=io.StringIO(), err=err) == 2
    assert "--records" in err.getvalue()
