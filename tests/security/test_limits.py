"""Limits of warden.run, each attacked by code that tries to go past it in a real sandbox:
rlimits (core dumps, open files, file size, CPU time), the output cap, how soon after its
deadline a sandbox is killed, and that a fork bomb at the pids limit leaves the host able to
fork."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import threading

import warden

from tests.security.conftest import py


def test_no_core_dumps():
    r = warden.run(py("import resource; print(resource.getrlimit(resource.RLIMIT_CORE))\n"
                      "resource.setrlimit(resource.RLIMIT_CORE, (1 << 20, 1 << 20))"))
    assert r.stdout.strip() == b"(0, 0)"
    assert b"ValueError" in r.stderr  # the hard limit is 0 too: it cannot be raised


def test_open_files_limit_bites_whatever_the_host_holds():
    """The limit holds inside, and it is below what the host process itself has open (the
    set-up must not trip over the host's descriptor numbers on its way in)."""
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(100)]
    try:
        code = ("import os\nfds=[]\ntry:\n while True: fds.append(os.open('/dev/null', os.O_RDONLY))\n"
                "except OSError as e:\n print(len(fds), e.errno)\n")
        r = warden.run(py(code), limits=warden.Limits(open_files=64))
    finally:
        for fd in held:
            os.close(fd)
    n, err = r.stdout.split()
    assert int(err) == 24  # EMFILE
    assert int(n) <= 64


def test_file_size_limit_kills_with_sigxfsz():
    r = warden.run(["/bin/sh", "-c", "exec head -c 3M /dev/zero > /workspace/big"],
                   limits=warden.Limits(file_size_mb=1, disk_mb=16))
    assert (r.reason, r.signal) == ("signaled", signal.SIGXFSZ)
    assert "file_size" in r.limits_hit
    r = warden.run(py("import os\nf=open('/workspace/big','wb')\ntry:\n f.write(b'x'*(2<<20)); f.flush()\n"
                      "except OSError as e:\n print('errno', e.errno)\n"),
                   limits=warden.Limits(file_size_mb=1, disk_mb=16))
    # Python ignores SIGXFSZ, so the write fails with EFBIG instead of the process dying.
    assert r.stdout.strip() == b"errno 27", (r.stdout, r.stderr[-200:])


def test_cpu_time_limit_stops_a_spinner():
    r = warden.run(py("while True: pass"), limits=warden.Limits(cpu_time_s=1, wall_time_s=30))
    assert (r.reason, r.signal) == ("signaled", signal.SIGXCPU)
    assert "cpu_time" in r.limits_hit
    assert r.duration_s < 25  # the CPU limit ended it, not the wall clock


def test_output_is_capped_and_flagged():
    r = warden.run(py("import sys; sys.stdout.write('x' * 300000); sys.stderr.write('e' * 10)"),
                   max_output_bytes=100_000)
    assert len(r.stdout) == 100_000 and r.stdout_truncated
    assert r.stderr == b"e" * 10 and not r.stderr_truncated
    assert r.exit_code == 0


def test_duration_and_peak_memory_are_measured():
    r = warden.run(py("import time; x = bytearray(48 << 20); time.sleep(0.3)"),
                   limits=warden.Limits(memory_mb=128))
    assert r.exit_code == 0
    assert 0.3 <= r.duration_s < 10
    assert r.peak_memory_bytes >= 48 << 20


def test_the_wall_timeout_kills_within_100_ms():
    """How late the kill lands past the deadline, for a process that ignores SIGTERM and
    double-forks: the median of five runs (the README's guarantee is 100 ms)."""
    late = []
    for _ in range(5):
        r = warden.run(["/bin/sh", "-c", "trap '' TERM; (trap '' TERM; sleep 100 &); sleep 100"],
                       limits=warden.Limits(wall_time_s=0.3))
        assert r.reason == "timeout"
        late.append(r.duration_s - 0.3)
    assert statistics.median(late) < 0.1, late


def test_a_fork_bomb_leaves_the_host_able_to_fork():
    bomb = ("import os,time\n"
            "while True:\n"
            " try:\n"
            "  if os.fork()==0:\n"
            "   time.sleep(3); os._exit(0)\n"
            " except OSError:\n"
            "  time.sleep(0.01)\n")

    box = {}
    t = threading.Thread(target=lambda: box.update(r=warden.run(
        py(bomb), limits=warden.Limits(pids=32, wall_time_s=2))))
    t.start()
    try:
        # While the bomb presses on its limit, the host still starts processes at will.
        for _ in range(20):
            assert subprocess.run(["/bin/true"], check=False).returncode == 0
    finally:
        t.join()
    assert box["r"].reason == "timeout" and "pids" in box["r"].limits_hit
