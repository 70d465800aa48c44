"""Hostile use of the agent's toolbox (streamed exec output, background processes) in real
sandboxes: a worker that floods or forges stream frames or process replies, a process that
prints without end or never exits, and many short processes."""

from __future__ import annotations

import os
import tracemalloc
import uuid

import pytest
import warden
from warden import ProtocolError, TimeoutExceeded, WorkerCrashed
from warden.guest.procs import RING_BYTES

from tests.plugins.test_plugins import native_ok


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=60, pids=128)) as box:
        yield box


def _plant(sb: warden.Sandbox, source: str) -> None:
    """Run ``source`` in the worker itself (as code in the sandbox can): it replaces a part
    of the worker's own machinery."""
    sb.call("def plant(x):\n" + "".join(f"    {line}\n" for line in source.splitlines())
            + "    return 1\n")


FLOOD = """
import warden.guest.emit as e
def flood(stream, data):
    for _ in range(100000):
        e._send({"id": e._request_id, "stream": "stdout", "data": b"x" * 65536})
e.emit = flood
"""


def test_a_worker_streaming_past_the_cap_is_cut_off_and_killed(sb):
    """The forged worker sends 6.4 GB of stream frames; the host takes 1 MiB of them (the
    cap it asked for), refuses the next, kills the sandbox, and allocated little meanwhile."""
    _plant(sb, FLOOD)
    got = [0]

    def count(data: bytes) -> None:
        got[0] += len(data)

    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="streamed more than"):
            sb.exec(["echo", "hi"], on_stdout=count, max_output_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got[0] == 1 << 20
    assert peak < 8 << 20
    with pytest.raises(WorkerCrashed):
        sb.exec(["true"])


@pytest.mark.parametrize("frame, why", [
    ('{"id": e._request_id, "stream": "stdout", "data": b"x" * 65537}', "over the 65536"),
    ('{"id": e._request_id, "stream": "stdin", "data": b"x"}', "other than stdout"),
    ('{"id": e._request_id, "stream": "stdout", "data": "text"}', "not bytes"),
    ('{"id": e._request_id, "stream": "stdout", "data": b"x", "more": 1}', "exactly the keys"),
])
def test_a_forged_stream_frame_is_refused_and_the_sandbox_killed(sb, frame, why):
    _plant(sb, f"import warden.guest.emit as e\ne.emit = lambda s, d: e._send({frame})\n")
    with pytest.raises(ProtocolError, match=why):
        sb.exec(["echo", "hi"], on_stdout=lambda d: None)
    with pytest.raises(WorkerCrashed):
        sb.exec(["true"])


def test_stream_frames_to_a_request_that_did_not_ask_for_them_are_refused(sb):
    """The worker streams into a plain exec: without on_stdout there is no stream to take,
    and the frame is a broken reply."""
    _plant(sb, "import warden.guest.emit as e, warden.guest.toolops as t\n"
               "t.emit = type('E', (), {'emit': staticmethod(lambda s, d: None)})\n"
               "import warden.guest.command as c\n"
               "orig = c.run\n"
               "def run(*a, **k):\n"
               "    e._send({'id': e._request_id, 'stream': 'stdout', 'data': b'x'})\n"
               "    return orig(*a, **k)\n"
               "c.run = run\n")
    with pytest.raises(ProtocolError):
        sb.exec(["echo", "hi"])
    with pytest.raises(WorkerCrashed):
        sb.exec(["true"])


def test_a_forged_process_read_is_refused_and_the_sandbox_killed(sb):
    p = sb.spawn(["sleep", "30"], stdin=False)
    _plant(sb, "import warden.guest.procs as p\n"
               "p.Proc.read = lambda self, off, most: ([['stdout', b'x' * 70000]], off + 70000, 0)\n")
    with pytest.raises(ProtocolError, match="chunk over"):
        p.poll()
    with pytest.raises(WorkerCrashed):
        sb.exec(["true"])


def test_a_process_printing_without_end_keeps_only_its_ring(sb):
    """`yes` prints as fast as it can and nobody reads: the worker keeps the newest RING_BYTES
    of it, the sandbox serves on, and a late reader is told how much it lost."""
    p = sb.spawn(["yes"], stdin=False)
    for _ in range(3):
        r = sb.exec(["sh", "-c", "head -c 50000000 /dev/zero | wc -c"])
        assert r.stdout == b"50000000\n"
    assert [i.pid for i in sb.processes()] == [p.pid]
    p.kill()
    kept = sum(len(d) for _, d in p.output(timeout=30))
    # The ring, and what was still in the pipe (64 KiB) or written before the kill landed,
    # read while the reader went through the ring.
    assert 0 < kept <= RING_BYTES + (256 << 10)
    assert p.lost_bytes > 0
    # The worker is well inside its memory limit: a 100 MiB command still fits beside it.
    r = sb.exec(["python3", "-c", "b = bytearray(100 << 20); print(len(b))"])
    assert r.ok


def test_a_process_that_never_exits_is_killed_with_its_sandbox(sb):
    marker = f"warden-forever-{uuid.uuid4().hex}"
    p = sb.spawn(["sh", "-c", "while :; do :; done", marker], stdin=False)
    with pytest.raises(TimeoutExceeded):
        p.wait(timeout=1)
    assert [i.pid for i in sb.processes()] == [p.pid]
    assert sb.exec(["echo", "still serving"]).ok

    def host_pids() -> list[int]:
        found = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
        return found

    assert len(host_pids()) == 1
    sb.close()
    assert host_pids() == []


def test_ten_thousand_short_background_commands_leave_no_process_behind(sb):
    """Each is reaped by the worker as it ends: the pids limit (128) is never reached, and
    the table forgets ended processes past its bound."""
    for i in range(10_000):
        p = sb.spawn(["true"], stdin=False)
        if i % 1000 == 0:
            assert p.wait(timeout=30).ok
    for _ in range(100):
        if not sb.processes():
            break
    assert sb.processes() == []
    r = sb.exec(["sh", "-c", "n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n"])
    assert int(r.stdout) < 10


SWAPPER = ("while :; do rm -rf d; mkdir d; rm -rf d; ln -s /tmp d; done")


def test_links_swapped_in_during_uploads_and_downloads_are_never_followed(sb):
    """A process inside swaps directory d for a link to /tmp as fast as it can while files
    move through d: each chunk is refused or lands in the workspace, never in /tmp."""
    import io

    sb.files.write("src.bin", b"s" * (3 << 20))
    swapper = sb.spawn(["sh", "-c", SWAPPER], stdin=False)
    outcomes = set()
    for _ in range(30):
        try:
            sb.files.upload(io.BytesIO(b"u" * (3 << 20)), "d/up.bin")
            outcomes.add("ok")
        except (warden.PathEscapeError, warden.SandboxFileError) as exc:
            outcomes.add(type(exc).__name__)
        try:
            sb.files.download("d/up.bin", io.BytesIO())
        except (warden.PathEscapeError, warden.SandboxFileError) as exc:
            outcomes.add(type(exc).__name__)
    swapper.kill()
    swapper.wait(timeout=30)
    # Nothing landed in /tmp (which may hold only the way to warden's read-only binds, when
    # the host keeps its Python under /tmp: nothing the sandbox can write).
    r = sb.exec(["sh", "-c", "find /tmp -xdev -type f | wc -l"])
    assert r.stdout == b"0\n", r.stdout
    assert "PathEscapeError" in outcomes or "SandboxFileNotFound" in outcomes
