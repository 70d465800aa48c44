"""Hostile output from commands in a long-lived sandbox (warden.Sandbox.exec): floods from many
writers at once, and background processes that hold the exec's pipes and keep writing. The
sandbox must neither run out of memory nor lose its worker, and the exec must end with its
command."""

from __future__ import annotations

import warden

MiB = 1 << 20


def test_many_writers_flooding_both_streams_cannot_exhaust_a_small_sandbox():
    flood = ("for i in 1 2 3 4; do head -c 50000000 /dev/zero & "
             "head -c 50000000 /dev/zero >&2 & done; wait")
    with warden.Sandbox(warden.Limits(memory_mb=64, wall_time_s=60)) as sb:
        r = sb.exec(["sh", "-c", flood])
        assert (r.reason, r.exit_code, r.limits_hit) == ("exited", 0, frozenset())
        assert len(r.stdout) <= 4 * MiB and len(r.stderr) <= 4 * MiB
        assert len(r.stdout) + r.stdout_dropped == 200_000_000
        assert len(r.stderr) + r.stderr_dropped == 200_000_000
        assert sb.exec(["echo", "still here"]).stdout == b"still here\n"


def test_a_background_flood_on_the_pipes_cannot_hold_the_exec_or_kill_the_sandbox():
    """The writer outlives the command and never stops writing to the exec's stdout; the
    exec still ends with the command, not at its deadline (which would kill the sandbox's
    command group and report a timeout)."""
    with warden.Sandbox(warden.Limits(memory_mb=64, wall_time_s=10)) as sb:
        r = sb.exec(["sh", "-c", "(while :; do echo flood; done) & echo hi"])
        assert (r.reason, r.exit_code) == ("exited", 0)
        assert b"hi\n" in r.stdout
        r = sb.exec(["sh", "-c", "setsid sh -c 'while :; do echo x >&2; done' & echo there"])
        assert (r.reason, r.exit_code) == ("exited", 0)
        assert sb.exec(["echo", "still here"]).stdout == b"still here\n"
