"""Sandbox.spawn, Process, Sandbox.processes and Sandbox.attach on the native provider: real
background processes in a real sandbox."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import warden
from warden import InvalidArgument, ProcessNotFound, ProcessStdinClosed, TimeoutExceeded

from tests.plugins.test_plugins import native_ok

REPL = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n"


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=30, pids=256)) as box:
        yield box


def test_a_process_outlives_the_call_and_talks_over_stdin_and_stdout(sb):
    p = sb.spawn(["python3", "-c", REPL])
    assert p.pid > 1 and p.poll() is None
    p.write(b"hello\n")
    chunks = p.output(timeout=20)
    assert next(chunks) == ("stdout", b"HELLO\n")
    p.write("again\n")
    assert next(chunks) == ("stdout", b"AGAIN\n")
    p.close_stdin()
    r = p.wait(timeout=20)
    assert (r.reason, r.exit_code) == ("exited", 0)
    assert p.poll() == 0 and p.returncode == 0
    with pytest.raises(ProcessStdinClosed):
        p.write(b"late\n")


def test_other_requests_are_served_while_processes_run(sb):
    p = sb.spawn(["sh", "-c", "echo started; sleep 60"])
    assert next(p.output(timeout=20)) == ("stdout", b"started\n")
    # The worker is free: commands, files and listings go on while the process runs.
    assert sb.exec(["echo", "meanwhile"]).stdout == b"meanwhile\n"
    sb.files.write("f.txt", "x")
    assert sb.files.read("f.txt") == b"x"
    assert [i.pid for i in sb.processes()] == [p.pid]
    p.kill()
    r = p.wait(timeout=20)
    assert (r.reason, r.signal) == ("signaled", signal.SIGKILL)
    assert sb.processes() == []


def test_output_keeps_streams_apart_and_wait_collects_what_was_not_read(sb):
    p = sb.spawn(["sh", "-c", "echo out; echo err >&2; exit 7"], stdin=False)
    r = p.wait(timeout=20)
    assert (r.exit_code, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    assert list(p.output()) == []  # all of it was given already


def test_env_and_cwd(sb):
    sb.files.write("d/x", "")
    p = sb.spawn(["sh", "-c", 'echo "$GREETING"; pwd; ls'], env={"GREETING": "hi"},
                 cwd="/workspace/d", stdin=False)
    assert p.wait(timeout=20).stdout == b"hi\n/workspace/d\nx\n"
    with pytest.raises(FileNotFoundError):
        sb.spawn(["true"], cwd="/nowhere")


def test_kill_reaches_what_the_process_started(sb):
    p = sb.spawn(["sh", "-c", "sleep 100 & sleep 100 & echo two; wait"], stdin=False)
    assert next(p.output(timeout=20)) == ("stdout", b"two\n")
    p.kill(signal.SIGTERM)
    r = p.wait(timeout=20)
    assert r.signal == signal.SIGTERM
    # The signal is sent to the whole group at once; a process dies when it next runs and
    # warden's init reaps it after that, so on a loaded host a `sleep` may still be listed
    # (as a zombie, or not yet scheduled) for a moment: what must hold is that none lives on.
    deadline = time.monotonic() + 15
    while True:
        left = sb.exec(["sh", "-c", "ps -eo stat=,comm="]).stdout.decode().splitlines()
        alive = [ln for ln in left if ln.split()[-1] == "sleep" and not ln.startswith("Z")]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert alive == [], left


def test_processes_lists_pid_argv_started_and_cpu(sb):
    busy = sb.spawn(["python3", "-c", "import time\nt=time.time()\nwhile time.time()-t<60: pass"])
    idle = sb.spawn(["sleep", "60"])
    # CPU time accrues to the busy one; read it until it shows.
    for _ in range(200):
        infos = {i.pid: i for i in sb.processes()}
        if infos[busy.pid].cpu_s > 0:
            break
        threading.Event().wait(0.05)
    assert set(infos) == {busy.pid, idle.pid}
    assert infos[idle.pid].argv == ["sleep", "60"]
    assert infos[busy.pid].cpu_s > 0 and infos[idle.pid].cpu_s == 0
    assert infos[busy.pid].started <= infos[idle.pid].started
    busy.kill()
    idle.kill()


def test_attach_from_another_thread_and_another_handle(sb):
    p = sb.spawn(["sh", "-c", "echo one; read x; echo two $x"])
    assert next(p.output(timeout=20)) == ("stdout", b"one\n")
    # Another thread, same handle: it reads all the output still kept, from the start.
    seen: list[tuple[str, bytes]] = []
    t = threading.Thread(target=lambda: seen.extend(sb.attach(p.pid).output(timeout=20)))
    t.start()
    # Another Sandbox handle of the same sandbox (the same reuse key).
    with warden.Sandbox(limits=warden.Limits(wall_time_s=30, pids=256),
                        reuse_key="attach-test") as a:
        with warden.Sandbox(limits=warden.Limits(wall_time_s=30, pids=256),
                            reuse_key="attach-test") as b:
            assert a.id == b.id
            q = a.spawn(["sh", "-c", "echo from-a; read y; echo got $y"])
            q2 = b.attach(q.pid)
            assert q2.argv == ["sh", "-c", "echo from-a; read y; echo got $y"]
            q2.write(b"z\n")
            assert q.wait(timeout=20).stdout == b"from-a\ngot z\n"
    p.write(b"x\n")
    t.join()
    assert b"".join(d for _, d in seen) == b"one\ntwo x\n"


def test_attach_to_an_unknown_pid_and_bad_arguments(sb):
    with pytest.raises(ProcessNotFound):
        sb.attach(999_999)
    with pytest.raises(InvalidArgument):
        sb.attach(0)
    with pytest.raises(InvalidArgument):
        sb.spawn([])
    with pytest.raises(InvalidArgument):
        sb.spawn(["true"], stdin="yes")  # type: ignore[arg-type]


def test_output_with_a_timeout_leaves_the_process_running(sb):
    p = sb.spawn(["sleep", "60"], stdin=False)
    with pytest.raises(TimeoutExceeded):
        list(p.output(timeout=0.5))
    with pytest.raises(TimeoutExceeded):
        p.wait(timeout=0.5)
    assert p.poll() is None
    p.kill()
    assert p.wait(timeout=20).signal == signal.SIGKILL


def test_fifty_processes_stream_at_once(sb):
    line = "i=0; while [ $i -lt 50 ]; do echo $i; i=$((i+1)); sleep 0.01; done"
    procs = [sb.spawn(["sh", "-c", line], stdin=False) for _ in range(50)]
    results: dict[int, bytes] = {}

    def read(p: warden.Process) -> None:
        results[p.pid] = b"".join(d for _, d in p.output(timeout=120))

    threads = [threading.Thread(target=read, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = "".join(f"{i}\n" for i in range(50)).encode()
    assert len(results) == 50 and set(results.values()) == {want}
    assert all(p.poll() == 0 for p in procs)
