from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import require


def warden_cli(*args, input=None):
    return subprocess.run([sys.executable, "-m", "warden", *args], capture_output=True,
                          input=input, timeout=120)


@pytest.fixture(autouse=True)
def _root():
    require(os.geteuid() == 0, "the CLI tests run real sandboxes (root for cgroups)")


def test_run_passes_exit_code_and_output():
    r = warden_cli("run", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7
    assert r.stdout == b"out\n" and b"err" in r.stderr


def test_run_reports_timeout_reason():
    r = warden_cli("run", "--timeout", "0.5", "--", "/bin/sleep", "30")
    assert r.returncode == 128 + 9
    assert b"timeout" in r.stderr


def test_run_memory_flag():
    code = "x=[]\nwhile True: x.append(bytearray(8<<20))"
    r = warden_cli("run", "--memory", "48M", "--", sys.executable, "-c", code)
    assert b"memory" in r.stderr


def test_run_stdin():
    r = warden_cli("run", "--", "/bin/cat", input=b"piped")
    assert r.stdout == b"piped"


def test_bad_limit_is_a_usage_error():
    r = warden_cli("run", "--pids", "0", "--", "/bin/true")
    assert r.returncode == 2 and b"pids" in r.stderr


def test_doctor_says_the_default_sandbox_runs():
    r = warden_cli("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"cgroup" in r.stdout.lower()
