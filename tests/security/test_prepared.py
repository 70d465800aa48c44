"""Sandboxes made ahead of their command: the init trusts nothing in its request, each sandbox
serves one command, and one that is not used is killed, not leaked or reused."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time

import pytest
import warden
from warden import _core
from warden.host import environ
from warden.providers.native import runner

from tests.conftest import require

# jail/status.h: Step values as written to the report pipe.
STEP_CHDIR, STEP_HANDSHAKE, STEP_DONE = 18, 27, 28
EPROTO, EPIPE = 71, 32
MAGIC = 0x31515257


def request(cwd: bytes, paths: list[bytes], argv: list[bytes], env: list[bytes], *,
            magic: int = MAGIC, counts: tuple[int, int, int] | None = None,
            blob_len: int | None = None, blob: bytes | None = None) -> bytes:
    if blob is None:
        blob = b"".join(s + b"\0" for s in [cwd, *paths, *argv, *env])
    n_paths, argc, envc = counts or (len(paths), len(argv), len(env))
    return struct.pack("=IIIIQ", magic, n_paths, argc, envc,
                       len(blob) if blob_len is None else blob_len) + blob


def init_with(req: bytes) -> tuple[list[tuple[int, int]], bytes, int, int | None]:
    """Runs warden-init outside any sandbox, as nobody, hands it `req`, and returns the
    reports it wrote, what its command printed (stdout and stderr), its exit code, and the
    command's wait status from the status pipe (None when it wrote none)."""
    rep_r, rep_w = os.pipe()
    st_r, st_w = os.pipe()
    host, mine = socket.socketpair()
    out_r, out_w = os.pipe()
    p = subprocess.Popen([runner.INIT_PATH, str(rep_w), str(st_w), str(mine.fileno())],
                         pass_fds=(rep_w, st_w, mine.fileno()), stdout=out_w, stderr=out_w,
                         stdin=subprocess.DEVNULL, user=65534, group=65534, extra_groups=[],
                         cwd="/")
    for fd in (rep_w, st_w, out_w):
        os.close(fd)
    mine.close()
    try:
        host.sendall(req)
    except BrokenPipeError:
        pass
    host.close()
    code = p.wait(timeout=10)
    reports = []
    with os.fdopen(rep_r, "rb") as f:
        data = f.read()
    for i in range(0, len(data) - len(data) % 8, 8):
        reports.append(struct.unpack("=ii", data[i:i + 8]))
    with os.fdopen(out_r, "rb") as f:
        out = f.read()
    with os.fdopen(st_r, "rb") as f:
        status = f.read()
    # jail/status.h FinalStatus: the wait status comes first.
    wait_status = struct.unpack("=i", status[:4])[0] if len(status) >= 4 else None
    return reports, out, code, wait_status


def test_init_runs_a_well_formed_request():
    reports, out, code, _ = init_with(request(b"/", [b"/bin/echo"], [b"echo", b"hi"], [b"A=1"]))
    assert reports == [(STEP_DONE, 0)] and out == b"hi\n" and code == 0


@pytest.mark.parametrize("case", [
    dict(magic=0x12345678),
    dict(counts=(1, 5, 1)),                       # more strings announced than sent
    dict(counts=(1, 1, 0)),                       # fewer: trailing bytes
    dict(blob=b"/\0/bin/echo\0echo\0A=1"),       # the last string not terminated
    dict(blob_len=1 << 40),                       # a blob no request needs
    dict(counts=(0, 1, 1)),                       # no exec candidate
    dict(counts=(1, 0, 2)),                       # no argv[0]
])
def test_init_refuses_a_malformed_request(case):
    req = request(b"/", [b"/bin/echo"], [b"echo"], [b"A=1"], **case)
    reports, out, code, _ = init_with(req)
    assert reports == [(STEP_DONE, 0), (STEP_HANDSHAKE, EPROTO)], reports
    assert out == b"" and code == 127


def test_init_refuses_a_relative_directory_and_a_cut_request():
    reports, out, code, _ = init_with(request(b"tmp", [b"/bin/echo"], [b"echo"], []))
    assert reports[-1] == (STEP_HANDSHAKE, EPROTO) and out == b"" and code == 127
    whole = request(b"/", [b"/bin/echo"], [b"echo", b"x"], [])
    reports, out, code, _ = init_with(whole[:-3])
    assert reports[-1] == (STEP_HANDSHAKE, EPIPE) and out == b"" and code == 127


def test_init_reports_a_missing_directory():
    reports, _, code, _ = init_with(request(b"/no/such", [b"/bin/echo"], [b"echo"], []))
    assert reports[-1][0] == STEP_CHDIR and code == 127


@pytest.mark.parametrize("paths,argv0,status,line", [
    ([b"/no/such"], b"x", 127, b"warden: x: command not found\n"),
    ([b"/no/such"], b"/no/such", 127, b"warden: /no/such: No such file or directory\n"),
    # A candidate that is there but cannot be run wins over later missing ones, as in
    # execvp(3).
    ([b"/etc/passwd", b"/no/such"], b"p", 126, b"warden: p: Permission denied\n"),
    ([b"/"], b"/", 126, b"warden: /: Permission denied\n"),
])
def test_a_command_that_cannot_be_exec_d_exits_as_in_a_shell(paths, argv0, status, line):
    """Not a set-up failure: the sandbox was whole, so the command's own exit says it, with a
    line on its stderr, and the init reports nothing but its readiness."""
    reports, out, code, wait_status = init_with(request(b"/", paths, [argv0], []))
    assert reports == [(STEP_DONE, 0)] and code == 0
    assert os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == status
    assert out == line


@pytest.fixture
def box(host_id):
    require(os.geteuid() == 0, "sandboxes need root here")
    b = _core.PreparedSandbox({**runner.base_config(warden.Limits()), **host_id.config()})
    yield b
    b.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_sandbox_serves_one_command(box):
    assert box.ready()
    out = box.start(["/bin/echo", "one"], environ.sandbox_env(None), ["/bin/echo"])
    assert out["mount_ns_fd"] == -1  # held only when the config asks for it
    assert out["stdout"] == b"one\n"
    assert not box.ready()
    with pytest.raises(ValueError, match="already started"):
        box.start(["/bin/echo", "two"], environ.sandbox_env(None), ["/bin/echo"])


def test_closing_an_unused_sandbox_kills_and_reaps_its_init(box):
    pid = box.pid
    assert not gone(pid)
    box.close()
    assert gone(pid)
    assert not box.ready()


def test_a_sandbox_whose_init_died_is_never_started(box):
    os.kill(box.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while box.ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not box.ready()


def test_a_forked_copy_cannot_kill_the_parents_sandbox(box):
    pid = os.fork()
    if pid == 0:
        box.close()  # in the child: closes its copies of the descriptors, kills nothing
        os._exit(0)
    os.waitpid(pid, 0)
    assert box.ready() and not gone(box.pid)


def test_the_wall_clock_starts_with_the_command(box):
    time.sleep(1.5)  # longer than the budget below: waiting for a command costs it nothing
    out = box.start(["/bin/sleep", "0.2"], environ.sandbox_env(None), ["/bin/sleep"],
                    timeout_s=1.0)
    assert out["mount_ns_fd"] == -1  # held only when the config asks for it
    assert not out["timed_out"] and out["have_status"] and out["wait_status"] == 0


def test_strings_with_nul_are_refused_and_the_sandbox_is_not_spent(box):
    with pytest.raises(ValueError, match="NUL"):
        box.start(["/bin/echo", "a\0b"], [], ["/bin/echo"])
    with pytest.raises(ValueError, match="cwd"):
        box.start(["/bin/echo"], [], ["/bin/echo"], cwd="relative")
    assert box.ready()


def test_sandboxes_of_different_limits_are_never_swapped():
    require(os.geteuid() == 0, "sandboxes need root here")
    hog = ["/bin/sh", "-c", "head -c 48m /dev/zero | tail -c 1 >/dev/null; "
           "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo ${#x}"]
    for _ in range(3):  # leaves sandboxes of both shapes ready in turn
        small = warden.run(hog, limits=warden.Limits(memory_mb=24))
        big = warden.run(hog, limits=warden.Limits(memory_mb=512))
        assert small.reason == "memory", small
        assert big.reason == "exited" and big.stdout == b"40000000\n", big
