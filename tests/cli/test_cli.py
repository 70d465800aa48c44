"""The command line, run as a subprocess of this test's own warden (its PYTHONPATH): every flag
of `warden run`, every exit status, the messages that name the flag or the command, --version,
and where the library's log goes (-v, WARDEN_LOG)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import warden
from warden._version import version
from warden.spec.limits import BOUNDS

from tests.conftest import require

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(warden.__file__)))


def warden_cli(*args, input=None, env=None):
    environ = {k: v for k, v in os.environ.items() if k != "WARDEN_LOG"}
    environ.update(env or {}, PYTHONPATH=PYTHON_DIR)
    return subprocess.run([sys.executable, "-m", "warden", *args], capture_output=True,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          env=environ, timeout=120, check=False)


@pytest.fixture
def root():
    require(os.geteuid() == 0, "the CLI tests run real sandboxes (root for cgroups)")


# -- what needs no sandbox ------------------------------------------------------------------------


def test_version_is_the_one_written_in_pyproject():
    r = warden_cli("--version")
    assert r.returncode == 0 and r.stdout == f"warden {version()}\n".encode()
    # The repository's pyproject, whether warden is imported from the tree or installed.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "pyproject.toml")) as f:
        assert f'version = "{version()}"' in f.read()


@pytest.mark.parametrize("flag,value,says", [
    ("--memory", "0", "0 is below the least allowed, 4M"),
    ("--memory", "2M", "2M is below the least allowed, 4M"),
    ("--memory", "2048G", "2048G is above the most allowed, 1024G"),
    ("--memory", "abc", "'abc' is not a size"),
    ("--disk", "512K", "512K is not a whole number of MiB: this limit is set in MiB"),
    ("--disk", "0", "0 is below the least allowed, 1M"),
    ("--file-size", "1.5M", "1.5M is not a whole number of MiB"),
    ("--file-size", "0", "0 is below the least allowed, 1M"),
    ("--pids", "0", "0 is below the least allowed, 1"),
    ("--pids", "1.5", "'1.5' is not a whole number"),
    ("--open-files", "3", "3 is below the least allowed, 16"),
    ("--cpus", "0", "0 is below the least allowed, 0.01"),
    ("--cpus", "nan", "nan is not a finite number"),
    ("--timeout", "0", "0 is below the least allowed, 0.001s"),
    ("--timeout", "1e9", "1e9 is above the most allowed, 604800s"),
    ("--cpu-time", "0.5", "0.5 is below the least allowed, 1s"),
    ("--env", "NOEQUALS", "'NOEQUALS' is not NAME=VALUE"),
    ("--env", "=x", "'=x' is not NAME=VALUE"),
    ("--cwd", "relative/dir", "'relative/dir' is not an absolute path inside the sandbox"),
    ("--network", "foo", "unknown network policy 'foo'; known: none"),
    ("--provider", "foo", "unknown provider 'foo'; known: auto, docker, native"),
])
def test_a_bad_value_is_a_usage_error_naming_the_flag(flag, value, says):
    r = warden_cli("run", flag, value, "--", "/bin/true")
    assert r.returncode == 2, r.stderr
    last = r.stderr.decode().splitlines()[-1]
    assert last.startswith(f"warden run: error: argument {flag}: {says}"), last
    # The flag people typed, never the Python field behind it.
    assert "Limits." not in last and not any(f in last for f in BOUNDS if "_" in f)


def test_run_without_a_command_is_a_usage_error():
    r = warden_cli("run")
    assert r.returncode == 2 and b"name a command after --" in r.stderr


# -- exit statuses --------------------------------------------------------------------------------


def test_run_passes_exit_code_and_output(root):
    r = warden_cli("run", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7
    assert r.stdout == b"out\n" and r.stderr == b"err\n"


def test_a_missing_command_exits_127_and_one_not_executable_126(root):
    r = warden_cli("run", "--", "no-such-command", "arg")
    assert (r.returncode, r.stdout) == (127, b"")
    assert r.stderr == b"warden: no-such-command: command not found\n"
    r = warden_cli("run", "--", "/etc/passwd")
    assert (r.returncode, r.stderr) == (126, b"warden: /etc/passwd: Permission denied\n")


def test_a_signal_exits_128_plus_its_number_and_is_named(root):
    r = warden_cli("run", "--", "/bin/sh", "-c", "kill -SEGV $$")
    assert r.returncode == 128 + signal.SIGSEGV
    assert r.stderr == b"warden: killed by SIGSEGV\n"


def test_warden_s_own_failure_exits_125(root):
    r = warden_cli("run", "--cwd", "/no/such/dir", "--", "/bin/true")
    assert r.returncode == 125
    assert r.stderr.startswith(b"warden run: sandbox set-up failed at step 'chdir'")


# -- every flag of run ----------------------------------------------------------------------------


def test_run_stdin(root):
    r = warden_cli("run", "--", "/bin/cat", input=b"piped")
    assert r.stdout == b"piped"


def test_run_timeout_flag(root):
    r = warden_cli("run", "--timeout", "0.5", "--", "/bin/sleep", "30")
    assert r.returncode == 128 + signal.SIGKILL
    assert b"warden: killed by SIGKILL (timeout: the wall time limit of 0.5s passed)" in r.stderr


def test_run_memory_flag(root):
    code = "x=[]\nwhile True: x.append(bytearray(8<<20))"
    r = warden_cli("run", "--memory", "48M", "--", sys.executable, "-c", code)
    assert r.returncode == 128 + signal.SIGKILL
    assert b"killed by SIGKILL (memory: out of memory at the limit of 48M)" in r.stderr


def test_run_pids_flag_stops_a_fork_bomb(root):
    code = ("import os,time\nn=0\ntry:\n while True:\n  if os.fork()==0:\n   time.sleep(5); os._exit(0)\n"
            "  n+=1\nexcept OSError as e:\n print(n, e.errno)\n")
    r = warden_cli("run", "--pids", "8", "--", sys.executable, "-c", code)
    n, err = r.stdout.split()
    assert int(err) == 11 and int(n) < 8  # EAGAIN; the count includes the python itself
    assert b"limits reached: pids" in r.stderr


def test_run_disk_flag_is_the_writable_space(root):
    r = warden_cli("run", "--disk", "4M", "--", "/bin/sh", "-c",
                   "head -c 8M /dev/zero > /workspace/f; echo rc=$?; du -k /workspace/f")
    assert b"rc=1" in r.stdout
    assert int(r.stdout.split()[-2]) <= 4096
    assert b"disk" in r.stderr


def test_run_file_size_flag(root):
    r = warden_cli("run", "--file-size", "1M", "--", "/bin/sh", "-c",
                   "exec head -c 3M /dev/zero > /workspace/f")
    assert r.returncode == 128 + signal.SIGXFSZ
    assert r.stderr == b"warden: killed by SIGXFSZ\nwarden: limits reached: file_size\n"


def test_run_cpu_time_flag(root):
    # A generous wall limit: on a busy machine one CPU second can take several.
    r = warden_cli("run", "--cpu-time", "1", "--timeout", "120", "--", "/bin/sh", "-c",
                   "while :; do :; done")
    assert r.returncode == 128 + signal.SIGXCPU
    assert r.stderr == b"warden: killed by SIGXCPU\nwarden: limits reached: cpu_time\n"


def test_run_open_files_flag(root):
    r = warden_cli("run", "--open-files", "20", "--", "/bin/sh", "-c", "ulimit -n")
    assert (r.returncode, r.stdout) == (0, b"20\n")


def test_run_cpus_flag_throttles(root):
    code = ("import os, time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.0: pass\n"
            "print(os.times().user + os.times().system)")
    r = warden_cli("run", "--cpus", "0.2", "--", sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 0.6  # about 0.2 s of CPU in one second of wall time


def test_run_env_flag_repeats_and_cwd_flag(root):
    r = warden_cli("run", "--env", "A=1", "--env", "B=x=y", "--env", "A=2", "--cwd", "/tmp",
                   "--", "/bin/sh", "-c", 'echo "$A $B"; pwd')
    assert (r.returncode, r.stdout) == (0, b"2 x=y\n/tmp\n")


def test_run_network_and_provider_flags(root):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        code = (f"import socket\ntry:\n socket.create_connection(('127.0.0.1', {port}), 2)\n"
                " print('connected')\nexcept OSError as e:\n print('refused', e.errno)\n")
        r = warden_cli("run", "--network", "none", "--provider", "native", "--", sys.executable,
                       "-c", code)
    assert r.stdout.startswith(b"refused")


# -- the log --------------------------------------------------------------------------------------

DEBUG_LINE = b"warden.providers.registry: DEBUG: provider 'native' loaded"


@pytest.mark.parametrize("args,env,shown", [
    (["run"], {}, False),
    (["-vv", "run"], {}, True),
    (["run", "-vv"], {}, True),
    (["run"], {"WARDEN_LOG": "debug"}, True),
    (["run"], {"WARDEN_LOG": "10"}, True),
    (["-v", "run"], {"WARDEN_LOG": "debug"}, False),  # the flag wins: -v is info
])
def test_verbosity_comes_from_the_flag_or_warden_log(root, args, env, shown):
    r = warden_cli(*args, "--", "/bin/true", env=env)
    assert r.returncode == 0, r.stderr
    assert (DEBUG_LINE in r.stderr) is shown


def test_a_warden_log_that_is_no_level_is_said_once(root):
    r = warden_cli("run", "--", "/bin/true", env={"WARDEN_LOG": "loud"})
    assert r.returncode == 0
    assert r.stderr == (b"warden: WARNING: WARDEN_LOG='loud' is not a level; using warning "
                        b"(use one of debug, info, warning, error, critical, or a number)\n")


# -- doctor ---------------------------------------------------------------------------------------


def test_doctor_says_the_default_sandbox_runs(root):
    r = warden_cli("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"cgroup" in r.stdout.lower()


def test_doctor_exits_non_zero_when_the_default_sandbox_cannot_run(root):
    """In a user namespace that may not make user namespaces, the sandbox cannot run, and
    doctor says which part is missing and exits 1."""
    import shutil

    require(shutil.which("unshare") is not None, "unshare(1) from util-linux is missing")
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    r = subprocess.run(["unshare", "-U", "-r", "sh", "-c",
                        'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" -m warden doctor',
                        sys.executable], capture_output=True, env=env, timeout=120, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert b"NO  user" in r.stdout
