"""Sandbox.exec with env, cwd and streaming callbacks, on the native provider, running real
commands in a real sandbox."""

from __future__ import annotations

import os
import signal
import tracemalloc
import uuid

import pytest
import warden
from warden import InvalidArgument, SandboxFileError

from tests.plugins.test_plugins import native_ok


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=30), env={"BASE": "1"}) as box:
        yield box


def test_env_adds_to_the_sandbox_environment_for_one_command(sb):
    r = sb.exec(["sh", "-c", 'echo "$BASE $EXTRA $HOME"'], env={"EXTRA": "x y"})
    assert r.stdout.split()[:3] == [b"1", b"x", b"y"]
    # Only for that command.
    assert sb.exec(["sh", "-c", 'echo "[$EXTRA]"']).stdout == b"[]\n"
    # A variable of the sandbox can be overridden for one command.
    assert sb.exec(["sh", "-c", "echo $BASE"], env={"BASE": "2"}).stdout == b"2\n"


def test_cwd_is_a_directory_inside_the_sandbox(sb):
    sb.files.write("src/a.txt", "hello")
    assert sb.exec(["cat", "a.txt"], cwd="/workspace/src").stdout == b"hello"
    assert sb.exec(["pwd"], cwd="/tmp").stdout == b"/tmp\n"
    assert sb.exec(["pwd"]).stdout == b"/workspace\n"
    with pytest.raises(SandboxFileError) as info:
        sb.exec(["pwd"], cwd="/workspace/missing")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(NotADirectoryError):
        sb.exec(["pwd"], cwd="/workspace/src/a.txt")
    with pytest.raises(InvalidArgument):
        sb.exec(["pwd"], cwd="relative")
    assert sb.exec(["true"]).ok  # the sandbox serves on


def test_callbacks_receive_every_chunk_in_order(sb):
    seen: list[tuple[str, bytes]] = []
    r = sb.exec(["sh", "-c", "echo early; echo err >&2; sleep 0.3; echo late"],
                on_stdout=lambda d: seen.append(("stdout", d)),
                on_stderr=lambda d: seen.append(("stderr", d)))
    assert r.ok and r.stdout == b"early\nlate\n" and r.stderr == b"err\n"
    joined = {s: b"".join(d for k, d in seen if k == s) for s in ("stdout", "stderr")}
    assert joined == {"stdout": b"early\nlate\n", "stderr": b"err\n"}
    assert seen[0] == ("stdout", b"early\n") and seen[-1] == ("stdout", b"late\n")


def _kill_on_host(marker: str) -> int:
    """SIGKILL every host process whose command line holds ``marker``; how many."""
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
                    killed += 1
        except OSError:
            continue
    return killed


def test_the_first_chunk_comes_while_the_command_runs(sb):
    """The callback kills the command when its first line arrives. The command loops until
    its deadline otherwise: had the chunk come with the reply, the exec would end by its
    timeout, not by the kill."""
    marker = f"warden-stream-{uuid.uuid4().hex}"
    killed = []

    def out(data: bytes) -> None:
        if b"ready" in data and not killed:
            killed.append(_kill_on_host(marker))

    r = sb.exec(["sh", "-c", "echo ready; while :; do sleep 0.05; done", marker],
                on_stdout=out, timeout=8)
    assert killed == [1]
    assert (r.reason, r.signal, r.stdout) == ("signaled", signal.SIGKILL, b"ready\n")


def test_streamed_bytes_are_capped_by_max_output_bytes(sb):
    got = bytearray()
    r = sb.exec(["sh", "-c", "head -c 300000 /dev/zero"], on_stdout=got.extend,
                max_output_bytes=100_000)
    assert len(got) == 100_000
    assert r.stdout_dropped == 200_000 and len(r.stdout) == 100_000


def test_a_flood_streams_through_with_flat_host_memory(sb):
    """256 MiB printed and streamed: every byte reaches the callback, and the host's Python
    allocations stay below 16 MiB at their peak."""
    total = [0]

    def count(data: bytes) -> None:
        total[0] += len(data)

    tracemalloc.start()
    try:
        r = sb.exec(["sh", "-c", "head -c 268435456 /dev/zero"], on_stdout=count,
                    max_output_bytes=1 << 30, timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.ok
    assert total[0] == 256 << 20
    assert peak < 16 << 20 + len(r.stdout)


def test_a_callback_that_raises_is_raised_after_the_command_and_the_sandbox_serves_on(sb):
    calls = []

    def bad(data: bytes) -> None:
        calls.append(data)
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        sb.exec(["sh", "-c", "echo a; sleep 0.2; echo b"], on_stdout=bad)
    assert calls == [b"a\n"]  # no more calls after it raised
    assert sb.exec(["echo", "next"]).stdout == b"next\n"


def test_callbacks_are_checked(sb):
    with pytest.raises(InvalidArgument) as info:
        sb.exec(["true"], on_stdout="print")  # type: ignore[arg-type]
    assert info.value.argument == "on_stdout"
    with pytest.raises(InvalidArgument):
        sb.exec(["true"], env={"A=B": "c"})


def test_each_result_accounts_for_its_own_cpu_and_output(sb):
    busy = sb.exec(["python3", "-c", "import time\nt = time.process_time()\n"
                    "while time.process_time() - t < 0.3: pass\nprint('x' * 999)"])
    assert busy.cpu_user_s + busy.cpu_system_s >= 0.3
    assert (busy.stdout_bytes, busy.stderr_bytes) == (1000, 0)
    idle = sb.exec(["sh", "-c", "head -c 5000 /dev/zero >&2"], max_output_bytes=100)
    assert idle.cpu_user_s + idle.cpu_system_s < 0.3  # not the earlier command's
    assert (idle.stderr_bytes, len(idle.stderr), idle.stderr_dropped) == (5000, 100, 4900)
    p = sb.spawn(["python3", "-c", "import time\nt = time.process_time()\n"
                  "while time.process_time() - t < 0.3: pass\nprint('done')"], stdin=False)
    r = p.wait(timeout=30)
    assert r.cpu_user_s + r.cpu_system_s >= 0.3 and r.stdout_bytes == 5
