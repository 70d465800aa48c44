"""warden.guest.command, run here without a sandbox: the exec of both providers' workers.
A command's output is bounded as it comes, and the exec ends with the command's own process,
whatever its background processes do with the pipes."""

from __future__ import annotations

import os
import signal

from warden.guest.command import run

ENV = {"PATH": "/usr/bin:/bin"}


def _run(tmp_path, argv, *, cap=1 << 20, timeout=30.0, stdin=None):
    return run(argv, stdin=stdin, cwd=str(tmp_path), env=ENV, timeout=timeout, cap=cap)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill(pid_line: bytes) -> None:
    """End the background process whose pid the command printed (if it still runs)."""
    try:
        os.kill(int(pid_line), signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_output_past_the_cap_is_read_counted_and_dropped(tmp_path):
    done = _run(tmp_path, ["sh", "-c", "head -c 5000000 /dev/zero; head -c 3000 /dev/zero >&2"],
                cap=1000)
    assert os.waitstatus_to_exitcode(done.wait_status) == 0
    assert (bytes(done.stdout), done.stdout_dropped) == (b"\0" * 1000, 4_999_000)
    assert (len(done.stderr), done.stderr_dropped) == (1000, 2000)


def test_the_exec_ends_with_the_command_not_with_its_pipes(tmp_path):
    """A background process holding stdout open does not hold the exec; it lives on."""
    done = _run(tmp_path, ["sh", "-c", "sleep 60 & echo $!"], timeout=20.0)
    assert not done.timed_out
    assert os.waitstatus_to_exitcode(done.wait_status) == 0
    pid = int(done.stdout)
    try:
        assert _alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_what_the_command_wrote_before_it_exited_is_all_there(tmp_path):
    """At the exit, the pipe's content is read to the end although a background process
    still holds it."""
    done = _run(tmp_path, ["sh", "-c", "sleep 60 & echo $! >&2; head -c 60000 /dev/zero; "
                                       "echo end"], timeout=20.0)
    _kill(done.stderr)
    assert not done.timed_out
    assert bytes(done.stdout) == b"\0" * 60000 + b"end\n"


def test_a_background_flood_cannot_hold_the_exec(tmp_path):
    """Output a background process keeps writing after the command exited is not waited
    for: the exec returns with the command."""
    done = _run(tmp_path, ["sh", "-c", "(while :; do echo flood; done) & echo $! >&2; echo hi"],
                timeout=20.0)
    _kill(done.stderr)
    assert not done.timed_out
    assert os.waitstatus_to_exitcode(done.wait_status) == 0
    assert b"hi\n" in bytes(done.stdout)
