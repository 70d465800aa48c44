"""The worker loop, run for real in a plain subprocess over a socketpair (no sandbox: these
test the protocol; the sandbox tests live with the native core)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import warden
from warden import PayloadTooLarge, PluginError, ProtocolError
from warden.guest.worker import Handler, load_entry
from warden.wire.channel import Channel, ChannelClosed
from warden.wire.large import memfd_ref, put_large

PYTHON_DIR = str(Path(warden.__file__).resolve().parent.parent)

PLUGIN = '''
import asyncio, os, sys
from helper_mod import double

_loops = set()

def handle(action, payload):
    if action == "echo":
        return payload
    if action == "double":
        return double(payload)
    if action == "boom":
        raise ValueError(f"bad payload {payload!r}")
    if action == "big":
        return b"x" * payload
    if action == "unencodable":
        return {1, 2, 3}
    if action == "exit":
        sys.exit(4)
    if action == "len":
        return len(payload)
    if action == "read_data":
        with open(os.path.join("data", payload), "rb") as f:
            return f.read()
    if action == "aio":
        return _aio(payload)
    raise KeyError(action)

async def _aio(payload):
    await asyncio.sleep(0)
    _loops.add(id(asyncio.get_running_loop()))
    return {"payload": payload, "loops_seen": len(_loops)}
'''

BATCH_PLUGIN = '''
def handle(action, payload):
    return payload + 1

async def handle_batch(action, items):
    return {"batched": [i * 10 for i in items]}
'''

MAX_FRAME = 64 * 1024


class Worker:
    def __init__(self, entry: Path, data_dir: Path | None = None, max_frame: int = MAX_FRAME):
        host, child = socket.socketpair()
        argv = [sys.executable, "-m", "warden.guest.worker", "--fd", str(child.fileno()),
                "--entry", str(entry), "--max-frame", str(max_frame)]
        if data_dir is not None:
            argv += ["--data-dir", str(data_dir)]
        self.proc = subprocess.Popen(argv, pass_fds=[child.fileno()], cwd=entry.parent.parent,
                                     env={"PYTHONPATH": PYTHON_DIR}, stderr=subprocess.PIPE)
        child.close()
        # The host may send more than the worker accepts: that is the worker's cap to enforce.
        self.chan = Channel(host, max_send=16 << 20, max_recv=max_frame)

    def call(self, op: str, **fields):
        return self.chan.call(op, deadline=time.monotonic() + 30, **fields)

    def close(self) -> int:
        self.chan.close()
        return self.proc.wait(timeout=30)


def make_plugin(root: Path, source: str) -> Path:
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.py").write_text(textwrap.dedent(source))
    (src / "helper_mod.py").write_text("def double(x):\n    return x * 2\n")
    (root / "data").mkdir(exist_ok=True)
    return src / "main.py"


@pytest.fixture
def worker(tmp_path):
    w = Worker(make_plugin(tmp_path, PLUGIN), data_dir=tmp_path / "data")
    yield w
    w.close()


def test_ping_call_and_sibling_imports(worker):
    assert worker.call("ping")["pong"] is True
    assert worker.call("ping")["pid"] == worker.proc.pid
    assert worker.call("call", action="echo", payload={"a": [1, "b", None]}) == \
        {"a": [1, "b", None]}
    assert worker.call("call", action="double", payload=21) == 42


def test_async_handle_runs_on_one_persistent_loop(worker):
    first = worker.call("call", action="aio", payload=1)
    second = worker.call("call", action="aio", payload=2)
    assert first == {"payload": 1, "loops_seen": 1}
    assert second == {"payload": 2, "loops_seen": 1}


def test_batch_loops_over_handle(worker):
    assert worker.call("batch", action="double", items=list(range(1000))) == \
        [i * 2 for i in range(1000)]
    assert worker.call("batch", action="aio", items=[1, 2])[1]["payload"] == 2
    assert worker.call("batch", action="echo", items=[]) == []


def test_handle_batch_is_used_when_defined(tmp_path):
    w = Worker(make_plugin(tmp_path, BATCH_PLUGIN))
    try:
        assert w.call("batch", action="x", items=[1, 2]) == {"batched": [10, 20]}
        assert w.call("call", action="x", payload=1) == 2
    finally:
        assert w.close() == 0


def test_plugin_exception_becomes_plugin_error_and_worker_keeps_serving(worker):
    with pytest.raises(PluginError) as info:
        worker.call("call", action="boom", payload=[1])
    err = info.value
    assert err.type == "ValueError"
    assert err.message == "bad payload [1]"
    assert 'raise ValueError(f"bad payload' in err.traceback
    with pytest.raises(PluginError) as info:
        worker.call("call", action="exit", payload=None)
    assert info.value.type == "SystemExit"
    assert worker.call("call", action="echo", payload="alive") == "alive"


def test_oversized_reply_is_refused_and_worker_keeps_serving(worker):
    with pytest.raises(PayloadTooLarge) as info:
        worker.call("call", action="big", payload=MAX_FRAME)
    assert info.value.limit == MAX_FRAME
    # Just under the cap still goes through.
    overhead = len(b'\x83\xa2id\x01\xa2ok\xc3\xa6result\xc6\x00\x00\x00\x00') + 4
    assert len(worker.call("call", action="big", payload=MAX_FRAME - overhead - 16)) > 0
    assert worker.call("call", action="echo", payload=1) == 1


def test_oversized_request_is_refused_and_worker_keeps_serving(worker):
    with pytest.raises(PayloadTooLarge) as info:
        worker.call("call", action="len", payload=b"y" * (MAX_FRAME + 1))
    assert info.value.limit == MAX_FRAME
    assert worker.call("call", action="len", payload=b"y" * 1000) == 1000


def test_unencodable_result_is_a_plugin_error(worker):
    with pytest.raises(PluginError) as info:
        worker.call("call", action="unencodable", payload=None)
    assert info.value.type == "TypeError"
    assert worker.call("call", action="echo", payload=2) == 2


def test_large_payload_as_memfd(worker):
    ref, fd = memfd_ref(b"z" * (4 * MAX_FRAME))
    try:
        assert worker.call("call", action="len", payload=ref, fds=[fd]) == 4 * MAX_FRAME
    finally:
        os.close(fd)
    ref, fd = memfd_ref({"rows": list(range(50_000))})
    try:
        assert worker.call("call", action="len", payload=ref, fds=[fd]) == 1
    finally:
        os.close(fd)


def test_large_payload_as_file_in_the_data_area(worker, tmp_path):
    ref = put_large(b"f" * (3 * MAX_FRAME), tmp_path / "data")
    assert worker.call("call", action="len", payload=ref) == 3 * MAX_FRAME
    # The plugin can also produce a file and hand back its name.
    ref = put_large(b"hello", tmp_path / "data", name="greeting.bin")
    assert worker.call("call", action="read_data", payload="greeting.bin") == b"hello"


def test_exec_python_captures_output_and_exit_code(worker):
    r = worker.call("exec_python", code="import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert (r["exit_code"], r["stdout"], r["stderr"]) == (0, b"out\n", b"err\n")
    r = worker.call("exec_python", code="raise SystemExit(3)")
    assert r["exit_code"] == 3
    r = worker.call("exec_python", code="1/0")
    assert r["exit_code"] == 1 and b"ZeroDivisionError" in r["stderr"]
    r = worker.call("exec_python", code="print('x' * 10**6)")
    assert r["stdout_truncated"] and len(r["stdout"]) < MAX_FRAME
    r = worker.call("exec_python", code="def broken(:\n")
    assert r["exit_code"] == 1 and b"SyntaxError" in r["stderr"]


def test_unknown_op_and_missing_fields(worker):
    with pytest.raises(ProtocolError, match="unknown op"):
        worker.call("launch_missiles")
    with pytest.raises(ProtocolError, match="action"):
        worker.call("call", payload=1)
    with pytest.raises(ProtocolError, match="items"):
        worker.call("batch", action="echo", items="nope")
    assert worker.call("ping")["pong"]


def test_shutdown_and_eof_end_the_worker_cleanly(tmp_path):
    w = Worker(make_plugin(tmp_path, PLUGIN))
    assert w.call("shutdown") is None
    assert w.proc.wait(timeout=30) == 0
    w.chan.close()
    w = Worker(make_plugin(tmp_path, PLUGIN))
    w.call("ping")
    assert w.close() == 0  # the host closing the socket is a clean end


def test_garbage_from_the_host_stops_the_worker(tmp_path):
    w = Worker(make_plugin(tmp_path, PLUGIN))
    w.chan._sock.sendall(b"\x00\x00\x00\x01\xc1")
    assert w.proc.wait(timeout=30) == 2
    # Said through the worker's log, which its entry sends to stderr.
    err = w.proc.stderr.read()
    assert err.startswith(b"warden worker: ") and b"not a valid msgpack value" in err
    with pytest.raises(ChannelClosed):
        w.call("ping")
    w.chan.close()


def test_load_error_answers_every_call(tmp_path):
    w = Worker(make_plugin(tmp_path, "import no_such_module_here\n"))
    try:
        for _ in range(2):
            with pytest.raises(PluginError) as info:
                w.call("call", action="x", payload=None)
            assert info.value.type == "ModuleNotFoundError"
            assert "no_such_module_here" in info.value.traceback
        assert w.call("ping")["pong"]
    finally:
        assert w.close() == 0


def test_load_entry(tmp_path):
    entry = make_plugin(tmp_path, PLUGIN)
    handler = load_entry(entry)
    assert isinstance(handler, Handler) and handler.handle_batch is None
    assert handler.handle("double", 4) == 8
    (tmp_path / "src" / "nohandle.py").write_text("x = 1\n")
    with pytest.raises(PluginError, match="no callable handle"):
        load_entry(tmp_path / "src" / "nohandle.py")
    with pytest.raises(PluginError, match="does not exist"):
        load_entry(tmp_path / "src" / "missing.py")


def _serve_in_thread(handler: Handler, **kw):
    import threading

    from warden.guest.worker import serve

    host, child = socket.socketpair()
    t = threading.Thread(target=serve, args=(child.detach(), lambda: handler), kwargs=kw,
                         daemon=True)
    t.start()
    return Channel(host), t


def test_large_replies_go_beside_the_frame():
    """With ``large_replies`` (the native provider): a result that is the payload's mapping
    goes back as the same memfd, bytes over 1 MiB and any value over the frame cap through a
    pipe, even below 1 MiB when the frame cap is smaller; over ``max_large`` the worker
    refuses and keeps serving."""
    def handle(action, payload):
        return {"echo": lambda: payload, "bytes": lambda: b"b" * (3 << 20),
                "small": lambda: b"s" * (300 << 10), "rows": lambda: [b"r" * 1000] * 400,
                "huge": lambda: b"h" * (5 << 20)}[action]()

    chan, t = _serve_in_thread(Handler(handle), max_frame=256 << 10, large_replies=True,
                               max_large=4 << 20)
    with chan:
        ref, fd = memfd_ref(b"p" * (2 << 20))
        try:
            got = chan.call("call", action="echo", payload=ref, fds=[fd])
        finally:
            os.close(fd)
        assert isinstance(got, memoryview) and got == b"p" * (2 << 20)
        assert chan.call("call", action="bytes") == b"b" * (3 << 20)
        assert chan.call("call", action="small") == b"s" * (300 << 10)
        assert chan.call("call", action="rows") == [b"r" * 1000] * 400
        with pytest.raises(PayloadTooLarge):
            chan.call("call", action="huge")
        assert chan.call("ping")["pong"] is True
        chan.call("shutdown")
    t.join(10)
