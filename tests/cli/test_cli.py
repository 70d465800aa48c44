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


def test_run_pids_flag_stops_a_fork_bomb():
    code = ("import os,time\nn=0\ntry:\n while True:\n  if os.fork()==0:\n   time.sleep(5); os._exit(0)\n"
            "  n+=1\nexcept OSError as e:\n print(n, e.errno)\n")
    r = warden_cli("run", "--pids", "8", "--", sys.executable, "-c", code)
    n, err = r.stdout.split()
    assert int(err) == 11 and int(n) < 8  # EAGAIN; the count includes the python itself
    assert b"limits reached: pids" in r.stderr


def test_run_disk_flag_is_the_writable_space():
    r = warden_cli("run", "--disk", "4M", "--", "/bin/sh", "-c",
                   "head -c 8M /dev/zero > /workspace/f; echo rc=$?; du -k /workspace/f")
    assert b"rc=1" in r.stdout
    assert int(r.stdout.split()[-2]) <= 4096
    assert b"disk" in r.stderr


def test_run_cpus_flag_throttles():
    code = ("import os, time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.0: pass\n"
            "print(os.times().user + os.times().system)")
    r = warden_cli("run", "--cpus", "0.2", "--", sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 0.6  # about 0.2 s of CPU in one second of wall time


def test_run_network_flag_none_and_refused_others():
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        code = (f"import socket\ntry:\n socket.create_connection(('127.0.0.1', {port}), 2)\n"
                " print('connected')\nexcept OSError as e:\n print('refused', e.errno)\n")
        r = warden_cli("run", "--network", "none", "--", sys.executable, "-c", code)
    assert r.stdout.startswith(b"refused")
    r = warden_cli("run", "--network", "host", "--", "/bin/true")
    assert r.returncode == 125 and b"network" in r.stderr


def test_doctor_exits_non_zero_when_the_default_sandbox_cannot_run():
    """In a user namespace that may not make user namespaces, the sandbox cannot run, and
    doctor says which part is missing and exits 1."""
    import shutil

    require(shutil.which("unshare") is not None, "unshare(1) from util-linux is missing")
    r = subprocess.run(["unshare", "-U", "-r", "sh", "-c",
                        'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" -m warden doctor',
                        sys.executable], capture_output=True, timeout=120, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert b"NO  user" in r.stdout
