"""Sandbox.terminal: a real pseudo-terminal from the sandbox's own devpts, with bash and the
Python REPL running on it, job control, ^C and window sizes."""

from __future__ import annotations

import time

import pytest
import warden
from warden import InvalidArgument

from tests.plugins.test_plugins import native_ok


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=30)) as box:
        yield box


_LEFT: dict[int, bytes] = {}  # what a terminal printed past the last match, per terminal


def until(term: warden.Terminal, want: bytes, seconds: float = 20.0) -> bytes:
    """What the terminal printed up to and including ``want`` (fails if it never comes); what
    came after it is kept for the next call."""
    seen = _LEFT.pop(id(term), b"")
    deadline = time.monotonic() + seconds
    while want not in seen:
        assert time.monotonic() < deadline, f"{want!r} never came; the terminal said {seen!r}"
        seen += term.read(timeout=0.5)
    end = seen.index(want) + len(want)
    _LEFT[id(term)] = seen[end:]
    return seen[:end]


def test_a_login_shell_on_a_terminal_of_the_sandbox(sb):
    t = sb.terminal()
    until(t, b"$ ")
    t.write(b"tty; echo term=$TERM; python3 -c 'import sys; print(sys.stdout.isatty())'; "
            b"echo do''ne\n")
    out = until(t, b"done\r\n")
    assert b"/dev/pts/0\r\n" in out  # numbered in the sandbox's own devpts
    assert b"term=xterm-256color" in out and b"True\r\n" in out
    t.write(b"exit 3\n")
    r = t.wait(timeout=20)
    assert r.exit_code == 3


def test_ctrl_c_interrupts_the_foreground_group_and_the_shell_goes_on(sb):
    t = sb.terminal(["bash", "--norc", "-i"])
    until(t, b"$ ")
    # The job prints once it runs in the foreground; only then does ^C go to it.
    # Python handles SIGINT from its start: once it has printed, ^C ends it. (A shell's
    # child between fork and exec would still run the shell's own SIGINT handler.)
    t.write(b"python3 -c \"print('re'+'ady', flush=True); import time; time.sleep(100)\"; "
            b"echo after-sleep\n")
    until(t, b"ready\r\n")
    t.write(b"\x03")
    out = until(t, b"$ ")  # the shell's next prompt: the job is over (input typed ahead of
    t.write(b"echo al''ive\n")  # it would be flushed with the job)
    out += until(t, b"alive\r\n")
    assert b"KeyboardInterrupt" in out
    assert b"after-sleep\r\n" not in out  # the interrupt ended the whole line
    t.close()


def test_job_control_suspends_and_resumes_a_job(sb):
    t = sb.terminal(["bash", "--norc", "-i"])
    until(t, b"$ ")
    # The job says when it runs (in the foreground, the terminal given to its group).
    t.write(b"sh -c 'echo re\"\"ady; exec cat'\n")
    until(t, b"ready\r\n")
    t.write(b"\x1a")  # ^Z: SIGTSTP to the foreground job
    until(t, b"Stopped")
    until(t, b"$ ")
    t.write(b"jobs -s | wc -l; fg\n")
    assert b"\r1\r\n" in until(t, b"exec cat")  # one stopped job, now resumed
    t.write(b"back\n")
    until(t, b"back\r\n")
    t.write(b"\x04")  # ^D: end of input for cat
    until(t, b"$ ")
    t.write(b"echo f''in\n")
    until(t, b"fin\r\n")
    t.close()


def test_the_python_repl_and_resizing(sb):
    t = sb.terminal(["python3", "-q"], cols=100, rows=30, env={"PYTHONSTARTUP": ""})
    until(t, b">>> ")
    t.write(b"import os; tuple(os.get_terminal_size())\n")
    until(t, b"(100, 30)")
    t.resize(132, 43)
    t.write(b"tuple(os.get_terminal_size())\n")
    until(t, b"(132, 43)")
    t.write(b"exit()\n")
    assert t.wait(timeout=20).exit_code == 0


def test_a_terminal_is_listed_and_other_requests_go_on(sb):
    t = sb.terminal(["sh"], cwd="/tmp")
    assert t.pid in [p.pid for p in sb.processes()]
    assert sb.exec(["echo", "meanwhile"]).stdout == b"meanwhile\n"
    t.write(b"pwd\n")
    until(t, b"\r\n/tmp\r\n")
    t.close()
    assert t.poll() is not None
    assert t.pid not in [p.pid for p in sb.processes()]


def test_terminal_arguments_are_checked(sb):
    with pytest.raises(InvalidArgument):
        sb.terminal(cols=0)
    with pytest.raises(InvalidArgument):
        sb.terminal(rows=70000)
    with pytest.raises(InvalidArgument):
        sb.terminal([])
