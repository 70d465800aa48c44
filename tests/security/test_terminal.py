"""A terminal in a sandbox cannot reach beyond it: TIOCSTI (typing into a terminal) and
TIOCLINUX stay refused, the host's terminals are not there, and what a program prints comes
to the host as raw bytes that nothing on the host interprets."""

from __future__ import annotations

import os

import pytest
import warden

from tests.plugins.test_plugins import native_ok
from tests.sandboxes.test_terminal import until


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=30)) as box:
        yield box


INJECT = (b"python3 -c 'import fcntl, termios, errno\n"
          b"for req in (termios.TIOCSTI, 0x541C):\n"
          b"    try:\n"
          b"        fcntl.ioctl(0, req, b\"\\x0b\")\n"
          b"        print(\"allow\", hex(req))\n"
          b"    except OSError as e:\n"
          b"        print(\"refused\", hex(req), errno.errorcode[e.errno])\n"
          b"'\n")


def test_tiocsti_and_tioclinux_are_refused_on_the_sandbox_terminal(sb):
    t = sb.terminal(["bash", "--norc", "-i"])
    until(t, b"$ ")
    t.write(INJECT)
    out = until(t, b"0x541c")
    assert b"refused 0x5412 EPERM" in out
    assert b"allow" not in out.replace(b'print("allow"', b"")
    t.close()


def test_the_hosts_terminals_are_not_in_the_sandbox(sb):
    host_master, host_slave = os.openpty()  # the host has at least this terminal now
    try:
        host_name = os.ttyname(host_slave)
        t = sb.terminal(["sh"])
        r = sb.exec(["sh", "-c", "ls /dev/pts; readlink /dev/ptmx; cat /dev/tty 2>&1; true"])
        listed = r.stdout.split(b"\n")
        # Its own devpts: the terminal just made is pts 0, whatever the host's numbers are.
        assert listed[:2] == [b"0", b"ptmx"] and listed[2] == b"pts/ptmx"
        assert host_name != "/dev/pts/0" or listed[:1] == [b"0"]
        # A command outside the terminal has no controlling terminal: /dev/tty leads nowhere.
        assert b"No such device or address" in r.stdout
        # On the terminal, /dev/tty is that terminal.
        t.write(b"echo via-tty > /dev/tty; tty\n")
        assert b"via-tty\r\n/dev/pts/0\r\n" in until(t, b"/dev/pts/0\r\n")
        t.close()
    finally:
        os.close(host_master)
        os.close(host_slave)


def test_escape_sequences_arrive_as_raw_bytes(sb):
    t = sb.terminal(["sh", "-c", r"printf '\033]0;title\007\033[2J\033]52;c;aGk=\007end'"])
    out = b""
    while not out.endswith(b"end"):
        chunk = t.read(timeout=10)
        assert chunk, out
        out += chunk
    assert out == b"\x1b]0;title\x07\x1b[2J\x1b]52;c;aGk=\x07end"
    assert t.wait(timeout=20).exit_code == 0


def test_a_fork_bomb_on_the_terminal_stops_at_the_pids_limit_and_the_shell_recovers():
    """A bomb of pipelines in the foreground: forks fail at the sandbox's pids limit, ^C
    ends the whole foreground group, and the same shell runs the next command."""
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=60, pids=48)) as box:
        t = box.terminal(["bash", "--norc", "-i"])
        until(t, b"$ ")
        t.write(b"bomb() { bomb | bomb; }; bomb\n")
        out = until(t, b"Resource temporarily unavailable", seconds=60)
        assert b"fork" in out
        for _ in range(20):  # one ^C per round of forks that may still be retrying
            t.write(b"\x03")
            if b"$ " in t.read(timeout=0.5):
                break
        # Typed-ahead input may be flushed with the interrupted job: type again until the
        # shell answers.
        answered = b""
        for _ in range(10):
            t.write(b"echo sur''vived\n")
            answered += t.read(timeout=3) + t.read(timeout=1)
            if b"survived\r\n" in answered:
                break
        assert b"survived\r\n" in answered
        t.close()
