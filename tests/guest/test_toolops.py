"""The tool ops' exec, run here without a sandbox: both providers' workers (the native zygote's
and the Docker container's) answer Sandbox.exec with it, so what it reports for a command that
cannot be run is what every provider reports."""

from __future__ import annotations

import os

import pytest
from warden.guest.toolops import op_exec


def exec_in(where, argv, **fields):
    return op_exec({"argv": argv, "cwd": str(where), "timeout": 30,
                    "env": {"PATH": "/usr/bin:/bin"}, **fields}, [], set())


def test_a_command_runs_and_reports_its_exit(tmp_path):
    r = exec_in(tmp_path, ["sh", "-c", "echo hi; exit 3"])
    assert (r["exit_code"], r["signal"], r["stdout"]) == (3, None, b"hi\n")


def test_a_missing_command_exits_127_with_one_line(tmp_path):
    r = exec_in(tmp_path, ["no-such-command-here", "arg"])
    assert (r["exit_code"], r["signal"], r["timed_out"]) == (127, None, False)
    assert (r["stdout"], r["stderr"]) == (b"", b"warden: no-such-command-here: command not found\n")
    missing = str(tmp_path / "nothing")
    r = exec_in(tmp_path, [missing])
    assert r["exit_code"] == 127
    assert r["stderr"] == f"warden: {missing}: No such file or directory\n".encode()


def test_a_command_that_cannot_be_executed_exits_126(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    os.chmod(script, 0o644)
    if os.geteuid() == 0:
        # root may exec any file with an exec bit; with none, even root gets EACCES.
        assert not os.access(script, os.X_OK)
    r = exec_in(tmp_path, [str(script)])
    assert (r["exit_code"], r["stdout"]) == (126, b"")
    assert r["stderr"] == f"warden: {script}: Permission denied\n".encode()
    r = exec_in(tmp_path, [str(tmp_path)])  # a directory
    assert r["exit_code"] == 126


def test_a_missing_working_directory_is_still_an_error(tmp_path):
    """Only the command's own exec becomes 127/126; a working directory that is not there is
    a failure of the request, not something the command did."""
    with pytest.raises(FileNotFoundError):
        exec_in(tmp_path / "gone", ["true"])


def test_both_streams_at_their_cap_still_fit_one_reply_frame(tmp_path):
    """The default cap of each stream leaves room for the other and the envelope: an exec
    is never answered with PayloadTooLarge."""
    from warden.wire.codec import DEFAULT_MAX_FRAME, FrameReader, encode
    from warden.wire.replies import ok_reply, parse_exec

    r = exec_in(tmp_path, ["sh", "-c", "head -c 20000000 /dev/zero; head -c 20000000 /dev/zero >&2"])
    reader = FrameReader(DEFAULT_MAX_FRAME)
    reader.feed(encode(ok_reply(7, r), DEFAULT_MAX_FRAME))
    got = parse_exec(reader.read()["result"])
    assert got.stdout_truncated and got.stderr_truncated
    assert len(got.stdout) + got.stdout_dropped == 20_000_000
    assert len(got.stderr) + got.stderr_dropped == 20_000_000


def test_the_cap_asked_for_is_kept_and_a_bad_one_refused(tmp_path):
    from warden.errors import ProtocolError

    r = exec_in(tmp_path, ["sh", "-c", "head -c 1000 /dev/zero"], max_output=10)
    assert (bytes(r["stdout"]), r["stdout_dropped"], r["stdout_truncated"]) == (b"\0" * 10, 990, True)
    for bad in (-1, "10", True, 1.5):
        with pytest.raises(ProtocolError):
            exec_in(tmp_path, ["true"], max_output=bad)
