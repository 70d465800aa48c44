"""One suite, every provider: the same hostile code, limits, errors, files and commands.

Each test runs against "native" and "docker" (see conftest.py); what a test asserts is what the
kernel allowed inside that provider's sandbox."""

from __future__ import annotations

import dataclasses
import errno
import socket
import threading

import pytest
import warden
from warden.errors import (
    DiskQuotaExceeded,
    InvalidArgument,
    MemoryLimitExceeded,
    PathEscapeError,
    PayloadTooLarge,
    PluginError,
    ProviderUnavailable,
    TimeoutExceeded,
)
from warden.providers.base import SandboxSpec


def py(code: str) -> list[str]:
    return ["python3", "-c", code]


# -- commands and files --------------------------------------------------------------------------


def test_exec_passes_stdin_and_returns_output(provider, box):
    r = provider.exec(box, py("import sys; d=sys.stdin.read(); print(d.upper()); "
                              "sys.stderr.write('e'); sys.exit(3)"), stdin=b"abc")
    assert (r.reason, r.exit_code, r.stdout, r.stderr) == ("exited", 3, b"ABC\n", b"e")


def test_exec_runs_unprivileged_in_the_workspace(provider, box):
    r = provider.exec(box, py("import os; print(os.getuid() != 0, os.getcwd())"))
    assert r.stdout.split() == [b"True", b"/workspace"]


def test_a_command_that_cannot_run_exits_127_or_126_and_the_sandbox_serves_on(provider, box):
    r = provider.exec(box, ["no-such-command", "x"])
    assert (r.reason, r.exit_code, r.signal) == ("exited", 127, None)
    assert (r.stdout, r.stderr) == (b"", b"warden: no-such-command: command not found\n")
    r = provider.exec(box, ["/workspace/no-such-file"])
    assert r.exit_code == 127
    assert r.stderr == b"warden: /workspace/no-such-file: No such file or directory\n"
    provider.write_file(box, "plain.sh", b"#!/bin/sh\necho ran\n")  # no exec bit
    r = provider.exec(box, ["/workspace/plain.sh"])
    assert (r.exit_code, r.stdout) == (126, b"")
    assert r.stderr == b"warden: /workspace/plain.sh: Permission denied\n"
    provider.remove_file(box, "plain.sh")
    assert provider.exec(box, py("print('still here')")).stdout == b"still here\n"


def test_run_of_a_missing_command_exits_127(provider):
    r = provider.run(["no-such-command"])
    assert (r.reason, r.exit_code) == ("exited", 127)
    assert r.stderr == b"warden: no-such-command: command not found\n"


def test_files_round_trip_list_and_remove(provider, box):
    provider.write_file(box, "dir/a.bin", bytes(range(256)))
    assert provider.read_file(box, "dir/a.bin") == bytes(range(256))
    assert "a.bin" in provider.list_files(box, "dir")
    r = provider.exec(box, py("print(len(open('/workspace/dir/a.bin','rb').read()))"))
    assert r.stdout == b"256\n"
    provider.remove_file(box, "dir")
    assert "dir" not in provider.list_files(box)


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../x"])
def test_paths_out_of_the_workspace_are_refused(provider, box, path):
    with pytest.raises(PathEscapeError):
        provider.read_file(box, path)


def test_symlink_out_of_the_workspace_is_refused(provider, box):
    r = provider.exec(box, py("import os; os.symlink('/etc', '/workspace/out')"))
    assert r.ok, r.stderr
    with pytest.raises(PathEscapeError):
        provider.read_file(box, "out/passwd")
    provider.remove_file(box, "out")


def test_call_fn_and_plugin_error(provider, box):
    assert provider.call(box, "call_fn", {"source": "def dbl(x):\n    return x * 2\n",
                                          "payload": 21}) == 42
    with pytest.raises(PluginError) as info:
        provider.call(box, "call_fn", {"source": "def bad(x):\n    raise ValueError('no ' + x)\n",
                                       "payload": "way"})
    assert info.value.type == "ValueError" and info.value.message == "no way"
    assert "in bad" in info.value.traceback


def test_oversized_request_is_carried_or_refused_and_the_sandbox_keeps_serving(provider, box):
    big = b"x" * (17 << 20)
    if provider.name == "native":
        # Beside the frame, as a sealed memfd (warden.providers.native.payloads).
        assert provider.call(box, "call_fn", {"source": "def size(b):\n    return len(b)\n",
                                              "payload": big}) == len(big)
    else:
        # The attach stream carries frames alone, each at most the frame cap.
        with pytest.raises(PayloadTooLarge):
            provider.call(box, "call_fn", {"name": "dbl", "payload": big})
    assert provider.call(box, "ping", {})["pong"] is True


def test_plugin_entry_point_from_a_read_only_code_dir(provider, fresh, tmp_path):
    plugin = tmp_path / "plugin"
    (plugin / "src").mkdir(parents=True)
    (plugin / "src" / "main.py").write_text(
        "def handle(action, payload):\n"
        "    if action == 'write_code':\n"
        "        open('/plugin/src/main.py', 'a').write('#')\n"
        "    return {'action': action, 'n': payload['n'] + 1}\n")
    for p in (plugin, plugin / "src"):
        p.chmod(0o755)
    (plugin / "src" / "main.py").chmod(0o644)
    h = fresh(SandboxSpec(code_dir=str(plugin), entry_point="/plugin/src/main.py"))
    assert provider.call(h, "call", {"action": "go", "payload": {"n": 1}}) == {"action": "go",
                                                                               "n": 2}
    with pytest.raises(PluginError) as info:
        provider.call(h, "call", {"action": "write_code", "payload": {"n": 1}})
    assert info.value.type in ("OSError", "PermissionError")


def test_reuse_key_labels_list_and_idempotent_destroy(provider):
    spec = SandboxSpec(labels={"tenant": "t-suite", "project": "p1"})
    a = provider.create(spec, reuse_key="k-suite")
    try:
        b = provider.create(spec, reuse_key="k-suite")
        assert b.id == a.id
        other = provider.create(SandboxSpec(labels={"tenant": "t-other"}), reuse_key="k-suite")
        assert other.id != a.id  # another spec never gets this sandbox
        provider.destroy(other)
        assert a.id in [h.id for h in provider.list({"tenant": "t-suite"})]
        assert a.id not in [h.id for h in provider.list({"tenant": "t-nobody"})]
    finally:
        provider.destroy(a)
        provider.destroy(a)
    assert a.id not in [h.id for h in provider.list({"tenant": "t-suite"})]


def test_unknown_network_policy_is_an_invalid_argument():
    with pytest.raises(InvalidArgument) as info:
        SandboxSpec(network="host")
    assert info.value.argument == "network"


def test_a_known_policy_the_provider_lacks_is_refused_not_weakened(provider, monkeypatch):
    caps = provider.capabilities()
    monkeypatch.setattr(provider, "capabilities",
                        lambda: dataclasses.replace(caps, network_policies=frozenset()))
    with pytest.raises(ProviderUnavailable, match="network policy 'none'"):
        provider.create(SandboxSpec(network="none"))


# -- the hostile-code battery --------------------------------------------------------------------


def test_cannot_read_host_files(provider, box, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("s3cret")
    secret.chmod(0o644)
    code = ("import sys\nfor p in sys.argv[1:]:\n"
            "    try: print(p, open(p).read()[:20])\n"
            "    except OSError as e: print(p, 'refused', e.errno)\n")
    r = provider.exec(box, ["python3", "-c", code, str(secret), "/root/.bash_history",
                            "/etc/shadow", "/proc/1/environ"])
    assert r.ok, r.stderr
    assert b"s3cret" not in r.stdout
    for line in r.stdout.decode().splitlines():
        path, verdict = line.split()[:2]
        if path != "/proc/1/environ":
            assert verdict == "refused", line


@pytest.mark.parametrize("path", ["/usr/x", "/etc/x", "/x", "/bin/x"])
def test_cannot_write_read_only_paths(provider, box, path):
    r = provider.exec(box, py(f"open({path!r}, 'w')"))
    assert r.exit_code == 1
    assert b"Read-only file system" in r.stderr or b"Permission denied" in r.stderr


def test_cannot_reach_a_host_port(provider, box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        for _ in range(20):
            try:
                accepted.append(server.accept())
                return
            except OSError:
                continue

    t = threading.Thread(target=accept)
    t.start()
    code = ("import socket,sys\ns=socket.socket(); s.settimeout(2)\n"
            "try: s.connect(('127.0.0.1', int(sys.argv[1]))); print('connected')\n"
            "except OSError as e: print('refused', e.errno)\n")
    r = provider.exec(box, ["python3", "-c", code, str(port)])
    t.join()
    server.close()
    assert r.stdout.startswith(b"refused"), r.stdout
    assert not accepted


def test_host_environment_does_not_leak_in(provider, fresh, monkeypatch):
    monkeypatch.setenv("WARDEN_SUITE_SECRET", "hunter2")
    h = fresh(SandboxSpec(env={"GIVEN": "yes"}))
    r = provider.exec(h, py("import os; print(sorted(os.environ.items()))"))
    assert b"hunter2" not in r.stdout and b"WARDEN_SUITE_SECRET" not in r.stdout
    assert b"('GIVEN', 'yes')" in r.stdout


def test_exec_returns_when_its_command_exits_though_a_background_process_holds_stdout(
        provider, fresh):
    """The exec ends with the command's own process; the background process keeps running
    in the sandbox, and the sandbox serves on."""
    h = fresh(SandboxSpec(limits=warden.Limits(wall_time_s=20)))
    r = provider.exec(h, ["sh", "-c", "sleep 30 & echo $! > /workspace/bg.pid; echo hi"])
    assert (r.reason, r.exit_code, r.stdout) == ("exited", 0, b"hi\n")
    r = provider.exec(h, ["sh", "-c", "p=$(cat /workspace/bg.pid); kill -0 $p && cat /proc/$p/comm"])
    assert (r.exit_code, r.stdout) == (0, b"sleep\n"), r.stderr
    provider.exec(h, ["sh", "-c", "kill $(cat /workspace/bg.pid)"])


def test_output_past_its_cap_is_counted_not_kept_and_never_exhausts_the_sandbox(
        provider, fresh):
    """300 MB of output in a 64 MiB sandbox: truncated and counted, not an OOM."""
    h = fresh(SandboxSpec(limits=warden.Limits(memory_mb=64, wall_time_s=60)))
    r = provider.exec(h, ["sh", "-c", "head -c 200000000 /dev/zero; head -c 100000000 /dev/zero >&2"])
    assert (r.reason, r.exit_code, r.limits_hit) == ("exited", 0, frozenset()), r.limits_hit
    assert r.stdout_truncated and r.stderr_truncated
    assert 0 < len(r.stdout) <= 4 << 20
    assert (len(r.stdout) + r.stdout_dropped, len(r.stderr) + r.stderr_dropped) == (
        200_000_000, 100_000_000)
    r = provider.exec(h, ["sh", "-c", "head -c 1000 /dev/zero"], max_output_bytes=10)
    assert (r.stdout, r.stdout_dropped, r.stdout_truncated) == (b"\0" * 10, 990, True)


def test_both_streams_at_their_cap_are_one_reply_not_payload_too_large(provider, fresh):
    h = fresh(SandboxSpec(limits=warden.Limits(memory_mb=512, wall_time_s=60)))
    r = provider.exec(h, ["sh", "-c", "head -c 20000000 /dev/zero; head -c 20000000 /dev/zero >&2"])
    assert (r.reason, r.exit_code) == ("exited", 0)
    assert len(r.stdout) == len(r.stderr) > 4 << 20
    assert len(r.stdout) + r.stdout_dropped == 20_000_000


def test_each_exec_reports_itself_not_the_sandbox_history(provider, fresh):
    """After an OOM, a normal command exits with no limit hit and its own peak; a SIGKILL a
    command sends itself is a signal, not memory."""
    h = fresh(SandboxSpec(limits=warden.Limits(memory_mb=96, wall_time_s=60)))
    r = provider.exec(h, py("x=[]\nwhile True: x.append(bytearray(8<<20))"))
    assert r.reason == "memory", (r.reason, r.stderr[-300:])
    r = provider.exec(h, ["sh", "-c", "echo fine"])
    assert (r.reason, r.exit_code, r.limits_hit) == ("exited", 0, frozenset())
    assert 0 < r.peak_memory_bytes < 48 << 20, (r.peak_memory_bytes, r.peak_memory_source)
    assert r.peak_memory_source in ("exec", "process")
    r = provider.exec(h, ["sh", "-c", "kill -9 $$"])
    assert (r.reason, r.signal, r.limits_hit) == ("signaled", 9, frozenset())


# -- limits --------------------------------------------------------------------------------------


def test_memory_bomb_is_killed_for_memory(provider, fresh):
    h = fresh(SandboxSpec(limits=warden.Limits(memory_mb=96, wall_time_s=60)))
    r = provider.exec(h, py("x=[]\nwhile True: x.append(bytearray(8<<20))"))
    assert r.reason == "memory", (r.reason, r.stderr[-300:])
    assert "memory" in r.limits_hit and r.signal == 9


def test_memory_bomb_in_a_call_raises_memory_limit_exceeded(provider, fresh):
    h = fresh(SandboxSpec(limits=warden.Limits(memory_mb=96, wall_time_s=60)))
    with pytest.raises(MemoryLimitExceeded):
        provider.call(h, "call_fn", {"source": "def bomb(_):\n    x = []\n    while True:\n"
                                               "        x.append(bytearray(8 << 20))\n"})


def test_fork_bomb_stops_at_the_pids_limit(provider, fresh):
    h = fresh(SandboxSpec(limits=warden.Limits(pids=16, wall_time_s=60)))
    code = ("import os,time\nn=0\ntry:\n while True:\n  if os.fork()==0:\n   time.sleep(5); os._exit(0)\n"
            "  n+=1\nexcept OSError as e:\n print('stopped', n, e.errno)\n")
    r = provider.exec(h, py(code))
    assert r.stdout.startswith(b"stopped"), (r.stdout, r.stderr[-300:])
    n, err = map(int, r.stdout.split()[1:3])
    assert n < 16 and err == errno.EAGAIN
    assert "pids" in r.limits_hit


def test_disk_quota_gives_enospc(provider, fresh):
    h = fresh(SandboxSpec(limits=warden.Limits(disk_mb=8)))
    code = ("f=open('/workspace/fill','wb')\ntry:\n while True: f.write(b'x'*65536); f.flush()\n"
            "except OSError as e:\n print('errno', e.errno)\n")
    r = provider.exec(h, py(code))
    assert r.stdout.strip() == f"errno {errno.ENOSPC}".encode()
    assert "disk" in r.limits_hit
    with pytest.raises(DiskQuotaExceeded):
        provider.write_file(h, "more", b"y" * (1 << 20))


def test_exec_timeout_kills_the_command_and_the_sandbox_serves_on(provider, box):
    r = provider.exec(box, ["sh", "-c", "sleep 100 & sleep 100"], timeout=0.5)
    assert r.reason == "timeout"
    assert provider.exec(box, py("print('after')")).stdout == b"after\n"


def test_call_timeout_kills_the_worker_and_the_next_call_is_answered(provider, fresh):
    h = fresh(SandboxSpec(limits=warden.Limits(wall_time_s=30)))
    with pytest.raises(TimeoutExceeded):
        provider.call(h, "call_fn", {"source": "def spin(_):\n    while True: pass\n"},
                      timeout=0.5)
    if provider.name == "native":
        # The native sandbox is its worker: it is gone, and the caller makes a new one.
        h = fresh(SandboxSpec(limits=warden.Limits(wall_time_s=30)))
    assert provider.call(h, "ping", {})["pong"] is True


def test_no_late_reply_reaches_the_next_caller(provider, fresh):
    h = fresh(SandboxSpec(limits=warden.Limits(wall_time_s=30)))
    provider.call(h, "call_fn", {"source": "import time\ndef slow(x):\n    time.sleep(x)\n"
                                           "    return 'late'\n", "payload": 0})
    with pytest.raises(TimeoutExceeded):
        provider.call(h, "call_fn", {"name": "slow", "payload": 1.5}, timeout=0.3)
    if provider.name == "native":
        h = fresh(SandboxSpec(limits=warden.Limits(wall_time_s=30)))
    r = provider.call(h, "exec_python", {"code": "import time; time.sleep(2); print('fresh')"})
    assert r["stdout"] == b"fresh\n"


# -- the toolbox: env and cwd of a command, background processes, streamed output -------------


def test_exec_adds_env_and_runs_in_cwd(provider, box):
    r = provider.exec(box, ["sh", "-c", 'echo "$EXTRA"; pwd'], env={"EXTRA": "x y"}, cwd="/tmp")
    assert r.stdout == b"x y\n/tmp\n"
    with pytest.raises(FileNotFoundError):
        provider.exec(box, ["pwd"], cwd="/no/such/dir")


def test_a_background_process_runs_between_requests(provider, box):
    from warden.wire import ops
    from warden.wire.procs import parse_list, parse_read, parse_start, parse_written

    pid, _ = provider.tool_call(box, ops.PROC_START, {
        "argv": ["sh", "-c", "read x; echo got $x"], "env": None, "env_add": {"A": "1"},
        "cwd": None, "stdin": True}, parse_start)
    assert [p.pid for p in provider.tool_call(box, ops.PROC_LIST, {}, parse_list)] == [pid]
    assert provider.exec(box, ["echo", "meanwhile"]).stdout == b"meanwhile\n"
    assert provider.tool_call(box, ops.PROC_WRITE, {"pid": pid, "data": b"hi\n"},
                              lambda v: parse_written(v, 3)) == 3
    offset, out, end = 0, b"", None
    for _ in range(100):
        at = offset
        r = provider.tool_call(box, ops.PROC_READ,
                               {"pid": pid, "offset": at, "wait": 0.5, "max": 1 << 20},
                               lambda v, at=at: parse_read(v, at, 1 << 20))
        offset, out, end = r.next, out + b"".join(d for _, d in r.chunks), r.exit
        if end is not None:
            break
    assert out == b"got hi\n" and end is not None and end.exit_code == 0


def test_streamed_exec_output_or_a_clear_refusal(provider, box):
    chunks: list[bytes] = []
    if provider.name == "docker":
        with pytest.raises(ProviderUnavailable, match="streaming"):
            provider.exec(box, ["echo", "hi"], on_output={"stdout": chunks.append})
        return
    r = provider.exec(box, ["sh", "-c", "echo a; echo b"], on_output={"stdout": chunks.append})
    assert b"".join(chunks) == r.stdout == b"a\nb\n"


def test_a_terminal_and_a_notebook_runner_on_the_same_guest_code(provider, box):
    """The terminal (a pty as the controlling terminal) and run_code's runner are processes
    of the guest's table: the same requests on every provider."""
    from warden.sandboxes.notebook import _RUNNER
    from warden.wire import ops
    from warden.wire.procs import parse_read, parse_start, parse_written

    def read_until(pid: int, want: bytes, offset: int = 0) -> tuple[bytes, int]:
        out = b""
        for _ in range(200):
            at = offset
            r = provider.tool_call(box, ops.PROC_READ,
                                   {"pid": pid, "offset": at, "wait": 0.1, "max": 1 << 20},
                                   lambda v, at=at: parse_read(v, at, 1 << 20))
            offset, out = r.next, out + b"".join(d for _, d in r.chunks)
            if want in out:
                return out, offset
        raise AssertionError(f"{want!r} never came: {out!r}")

    pid, _ = provider.tool_call(box, ops.PROC_START, {
        "argv": None, "env": None, "env_add": {"TERM": "xterm-256color"}, "cwd": None,
        "stdin": True, "tty": [80, 24]}, parse_start)
    provider.tool_call(box, ops.PROC_WRITE, {"pid": pid, "data": b"tty; echo t=$TERM\n"},
                       lambda v: parse_written(v, 18))
    out, _ = read_until(pid, b"t=xterm-256color\r\n")
    assert b"/dev/pts/" in out
    provider.tool_call(box, ops.PROC_SIGNAL, {"pid": pid, "signal": 9}, lambda v: v)

    pid, _ = provider.tool_call(box, ops.PROC_START, {
        "argv": ["python3", "-I", "-u", "-c", _RUNNER, "NONCE"], "env": None, "env_add": None,
        "cwd": None, "stdin": True}, parse_start)
    provider.tool_call(box, ops.PROC_WRITE, {"pid": pid, "data": b'{"code": "6 * 7"}\n'},
                       lambda v: parse_written(v, 18))
    out, _ = read_until(pid, b"\n")
    assert out.startswith(b"NONCE") and b'"result": "42"' in out
