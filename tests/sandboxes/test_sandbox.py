"""warden.Sandbox, the long-lived sandbox of the tool layer, on the native provider: files,
commands, Python, calls, the read-only workspace, and what happens when code inside misbehaves."""

from __future__ import annotations

import os

import pytest
import warden
from warden import PathEscapeError, PluginError, TimeoutExceeded, WorkerCrashed
from warden.providers.native.state import state_of

from tests.plugins.test_plugins import native_ok
from tests.providers.test_native_prepared import wait_for


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=20),
                        labels={"tenant": "acme", "purpose": "tools"}) as box:
        yield box


def test_files_commands_and_python_share_the_workspace(sb):
    sb.files.write("data.csv", "a,b\n1,2\n")
    sb.files.write("sub/raw.bin", b"\x00\x01")
    assert sorted(sb.files.list()) == ["data.csv", "sub"]
    assert sb.files.list("sub") == ["raw.bin"]
    r = sb.exec(["wc", "-l", "data.csv"])
    assert (r.reason, r.exit_code, r.stdout) == ("exited", 0, b"2 data.csv\n")
    r = sb.run_python("import os; print(open('data.csv').read().split()[1]); "
                      "open('made.txt', 'w').write('inside')")
    assert (r.exit_code, r.stdout) == (0, b"1,2\n")
    assert sb.files.read("made.txt") == b"inside"  # written inside, read from the host side
    sb.files.remove("made.txt")
    assert "made.txt" not in sb.files.list()
    assert sb.labels["tenant"] == "acme"


def test_exec_of_a_command_that_cannot_run_exits_127_or_126(sb):
    """As warden.run and a shell: the command's outcome, not an error; the sandbox serves on."""
    r = sb.exec(["no-such-command"])
    assert (r.reason, r.exit_code, r.signal) == ("exited", 127, None)
    assert (r.stdout, r.stderr) == (b"", b"warden: no-such-command: command not found\n")
    sb.files.write("tool.sh", "#!/bin/sh\necho ran\n")  # written without an exec bit
    r = sb.exec(["/workspace/tool.sh"])
    assert (r.exit_code, r.stdout) == (126, b"")
    assert r.stderr == b"warden: /workspace/tool.sh: Permission denied\n"
    assert sb.exec(["sh", "-c", "chmod +x tool.sh && ./tool.sh"]).stdout == b"ran\n"


def test_call_takes_source_first_then_the_name(sb):
    assert sb.call("def total(rows):\n    return sum(rows)\n", [1, 2, 3]) == 6
    assert sb.call("total", [4, 5]) == 9
    assert sb.call("async def twice(x):\n    return 2 * x\n", 21) == 42
    # The same source again redefines the function instead of failing.
    assert sb.call("def total(rows):\n    return -sum(rows)\n", [1, 2]) == -3
    with pytest.raises(PluginError) as info:
        sb.call("def boom(x):\n    raise KeyError(x)\n", "k")
    assert info.value.type == "KeyError"
    assert sb.call("total", [1]) == -1  # the sandbox still serves after the plugin's error


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../x"])
def test_paths_leaving_the_workspace_are_refused(sb, path):
    with pytest.raises(PathEscapeError):
        sb.files.read(path)
    with pytest.raises(PathEscapeError):
        sb.files.write(path, b"x")


def test_a_symlink_planted_inside_cannot_lead_the_host_out(sb, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host only")
    r = sb.exec(["ln", "-s", str(secret), "link"])
    assert r.exit_code == 0
    with pytest.raises(PathEscapeError) as info:
        sb.files.read("link")
    assert "host only" not in str(info.value) and str(secret) not in str(info.value)


def test_run_python_timeout_ends_that_interpreter_not_the_sandbox(sb):
    r = sb.run_python("while True: pass", timeout=0.5)
    assert r.reason == "timeout"
    assert sb.exec(["true"]).exit_code == 0


def test_a_call_past_its_deadline_kills_the_sandbox(sb):
    with pytest.raises(TimeoutExceeded):
        sb.call("def hang(x):\n    while True: pass\n", None, timeout=0.5)
    with pytest.raises(WorkerCrashed):
        sb.exec(["true"])


def test_closing_removes_the_sandbox():
    native_ok()
    box = warden.Sandbox(labels={"project": "p-close"})
    provider = box._provider
    assert [h.id for h in provider.list({"project": "p-close"})] == [box.id]
    pid = state_of(box._handle).pid
    box.close()
    assert provider.list({"project": "p-close"}) == []
    # The sandbox is gone: its init, and with it the worker, exited. The zygote, its parent,
    # reaps it on SIGCHLD, a moment after destroy() saw it exit.
    wait_for(lambda: not _exists(pid))
    with pytest.raises(WorkerCrashed):
        box.exec(["true"])


def test_a_readonly_workspace_is_written_only_from_outside():
    native_ok()
    with warden.Sandbox(readonly=True) as box:
        box.files.write("in.txt", "given")
        r = box.run_python("print(open('in.txt').read())\n"
                           "try:\n    open('out.txt', 'w')\nexcept OSError as e:\n"
                           "    print(e.errno)\n")
        assert r.stdout.split() == [b"given", str(30).encode()]  # EROFS
        r = box.exec(["rm", "in.txt"])
        assert r.exit_code != 0
        assert box.files.read("in.txt") == b"given"
        assert box.exec(["sh", "-c", "echo t > /tmp/t && cat /tmp/t"]).stdout == b"t\n"


def test_exec_returns_with_its_command_and_the_background_process_lives_on(sb):
    r = sb.exec(["sh", "-c", "sleep 30 & echo hi"])
    assert (r.reason, r.exit_code, r.stdout) == ("exited", 0, b"hi\n")
    # The sandbox serves on, and the sleep still runs in it.
    r = sb.exec(["ps", "-eo", "comm"])
    assert r.exit_code == 0 and b"sleep" in r.stdout.split(), r.stdout
    sb.exec(["sh", "-c", "kill $(pidof sleep)"])


def test_max_output_bytes_is_checked_and_kept(sb):
    r = sb.exec(["sh", "-c", "printf 0123456789abc"], max_output_bytes=10)
    assert (r.stdout, r.stdout_truncated, r.stdout_dropped) == (b"0123456789", True, 3)
    for bad in (-1, "10", 1.5, True):
        with pytest.raises(warden.InvalidArgument, match="max_output_bytes"):
            sb.exec(["true"], max_output_bytes=bad)
