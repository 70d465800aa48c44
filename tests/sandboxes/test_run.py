"""warden.run: a command that cannot be run is the command's outcome, as in a shell (127 when
it is not there, 126 when it cannot be executed, one line on its stderr naming it); the
sandbox set-up did not fail, so it is never SandboxSetupError."""

from __future__ import annotations

import pytest
import warden

from tests.plugins.test_plugins import native_ok


@pytest.fixture(autouse=True)
def _native():
    native_ok()


@pytest.mark.parametrize("argv,status,line", [
    (["no-such-command", "-x"], 127, b"warden: no-such-command: command not found\n"),
    (["/no/such/program"], 127, b"warden: /no/such/program: No such file or directory\n"),
    (["/etc/passwd"], 126, b"warden: /etc/passwd: Permission denied\n"),  # no exec bit
    (["/tmp"], 126, b"warden: /tmp: Permission denied\n"),                # a directory
])
def test_a_command_that_cannot_run_exits_as_in_a_shell(argv, status, line):
    res = warden.run(argv)
    assert (res.reason, res.exit_code, res.signal) == ("exited", status, None)
    assert (res.stdout, res.stderr) == (b"", line)
    assert not res.ok and not res.limits_hit


def test_the_command_is_looked_up_on_the_path_it_is_given():
    assert warden.run(["true"]).exit_code == 0
    res = warden.run(["true"], env={"PATH": "/nowhere"})
    assert (res.exit_code, res.stderr) == (127, b"warden: true: command not found\n")
