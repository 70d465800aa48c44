"""Black-box escape attempts: hostile code runs in a real sandbox and the tests assert what the
kernel allowed."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
import warden

from tests.security.conftest import py


def run(argv, **kw):
    kw.setdefault("limits", warden.Limits(wall_time_s=20))
    return warden.run(argv, **kw)


def test_sees_itself_as_pid_1s_child_and_no_host_process():
    r = run(py("import os; print(os.getpid(), os.getppid()); print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"))
    assert r.ok, r.stderr
    first, second = r.stdout.decode().splitlines()
    assert first == "2 1"
    assert eval(second) == [1, 2]


def test_cannot_signal_host_process():
    host = os.getpid()
    r = run(py(f"import os\ntry:\n os.kill({host}, 0)\nexcept ProcessLookupError:\n print('gone')"))
    assert r.stdout.strip() == b"gone"


def test_runs_as_unprivileged_mapped_user():
    r = run(py("import os; print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())"))
    assert r.stdout.split() == [b"1000", b"1000", b"1000", b"[1000]"] or \
        r.stdout.strip() == b"1000 1000 1000 []"
    r = run(["/bin/cat", "/proc/self/status"])
    status = dict(line.split(":", 1) for line in r.stdout.decode().splitlines() if ":" in line)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap].strip(), 16) == 0, cap
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


def test_cannot_read_root_home_or_host_tmp(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    probe = (f"import os\nfor p in ['/root/.bashrc', '/home', {str(secret)!r}, '/etc/shadow', "
             "'/etc/hostname']:\n"
             "  try:\n    print(p, 'READ', open(p).read()[:20] if os.path.isfile(p) else os.listdir(p))\n"
             "  except OSError as e:\n    print(p, 'DENIED', e.errno)\n")
    r = run(py(probe))
    out = r.stdout.decode()
    assert "host secret" not in out
    assert f"{secret} DENIED" in out
    assert "/root/.bashrc DENIED" in out
    assert "/home DENIED" in out
    assert "/etc/shadow DENIED" in out
    assert "/etc/hostname READ warden" in out


def test_host_etc_is_not_visible():
    r = run(["/bin/ls", "/etc"])
    names = set(r.stdout.decode().split())
    assert "shadow" not in names and "ssh" not in names
    assert {"passwd", "group", "hosts"} <= names


@pytest.mark.parametrize("path", ["/usr/bin/newfile", "/etc/passwd", "/", "/proc/sys/kernel/hostname",
                                  "/bin/sh", "/dev/evil"])
def test_cannot_write_read_only_paths(path):
    code = ("import os,sys\np=sys.argv[1]\ntry:\n if os.path.isdir(p): open(os.path.join(p,'x'),'w').write('x')\n"
            " else: open(p,'a').write('x')\n print('WROTE')\nexcept OSError as e:\n print('ERR', e.errno)\n")
    r = run([*py(code), path])
    assert r.stdout.startswith(b"ERR"), (path, r.stdout, r.stderr)


def test_proc_dangerous_entries_are_masked():
    code = ("import os\nfor p in ['/proc/kcore','/proc/sysrq-trigger','/proc/keys','/proc/timer_list']:\n"
            "  try:\n    d=open(p,'rb').read(16); print(p, len(d))\n"
            "  except OSError as e:\n    print(p, 'ERR', e.errno)\n"
            "try:\n  open('/proc/sysrq-trigger','w').write('b')\n  print('SYSRQ WRITTEN')\n"
            "except OSError as e:\n  print('sysrq', e.errno)\n")
    r = run(py(code))
    out = r.stdout.decode()
    assert "SYSRQ WRITTEN" not in out
    for line in out.splitlines():
        if line.startswith("/proc/"):
            assert line.endswith(" 0") or " ERR " in line, line


def test_writable_areas_are_only_workspace_tmp_and_shm():
    r = run(["/bin/sh", "-c", "echo a > /workspace/a && echo b > /tmp/b && echo c > /dev/shm/c && cat /workspace/a /tmp/b /dev/shm/c"])
    assert r.stdout == b"a\nb\nc\n", r.stderr


def test_no_network_but_loopback():
    code = ("import socket\nprint(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n"
            "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print('loopback ok')\n"
            "c=socket.socket(); c.settimeout(2)\n"
            "try:\n c.connect(('1.1.1.1',80)); print('CONNECTED')\nexcept OSError as e:\n print('outside', e.errno)\n")
    r = run(py(code))
    out = r.stdout.decode()
    assert "['lo']" in out and "loopback ok" in out and "CONNECTED" not in out


def test_cannot_reach_a_listening_host_port():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    accepted = []
    srv.settimeout(0.2)

    def accept():
        try:
            accepted.append(srv.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    code = (f"import socket\ns=socket.socket(); s.settimeout(2)\ntry:\n s.connect(('127.0.0.1',{port})); print('CONNECTED')\n"
            "except OSError as e:\n print('refused', e.errno)\n")
    r = run(py(code))
    t.join()
    srv.close()
    assert b"refused" in r.stdout and not accepted


def test_network_cannot_be_reconfigured_and_is_never_shared():
    r = run(["/bin/sh", "-c", "readlink /proc/self/ns/net; ip link set lo down; echo rc=$?; "
             "ip link add dummy0 type dummy; echo rc=$?"])
    out = r.stdout.decode()
    assert "rc=0" not in out, out
    again = run(["/bin/readlink", "/proc/self/ns/net"])
    assert again.stdout.strip() != out.splitlines()[0].encode()
    assert again.stdout.strip() != os.readlink("/proc/self/ns/net").encode()


def test_host_abstract_unix_socket_unreachable():
    name = f"\0warden-test-{os.getpid()}"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(name)
    srv.listen()
    code = (f"import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect({name!r}); print('CONNECTED')\n"
            "except OSError as e:\n print('unreachable', e.errno)\n")
    r = run(py(code))
    srv.close()
    assert b"unreachable" in r.stdout


def test_host_environment_is_absent(monkeypatch):
    monkeypatch.setenv("WARDEN_TEST_SECRET", "hunter2")
    r = run(["/usr/bin/env"], env={"GIVEN": "yes"})
    env = dict(line.split("=", 1) for line in r.stdout.decode().splitlines())
    assert "WARDEN_TEST_SECRET" not in env
    assert env["GIVEN"] == "yes"
    assert set(env) == {"PATH", "HOME", "LANG", "GIVEN"}


def test_no_host_descriptor_leaks_in(tmp_path):
    leaked = open(tmp_path / "leak", "w")
    os.set_inheritable(leaked.fileno(), True)
    try:
        r = run(py("import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"))
    finally:
        leaked.close()
    # 0-2 and the descriptor listdir itself opens.
    fds = eval(r.stdout)
    assert fds[:3] == [0, 1, 2] and len(fds) == 4


def test_fork_bomb_stops_at_pids_limit():
    code = ("import os,time\nn=0\ntry:\n while True:\n  if os.fork()==0:\n   time.sleep(5); os._exit(0)\n  n+=1\n"
            "except OSError as e:\n print('stopped', n, e.errno)\n")
    r = run(py(code), limits=warden.Limits(pids=16, wall_time_s=20))
    assert b"stopped" in r.stdout
    assert int(r.stdout.split()[1]) <= 16
    assert "pids" in r.limits_hit


def test_memory_bomb_is_oom_killed():
    r = run(py("x=[]\nwhile True: x.append(bytearray(16<<20))"),
            limits=warden.Limits(memory_mb=64, wall_time_s=30))
    assert r.reason == "memory", (r.reason, r.stderr[-300:])
    assert "memory" in r.limits_hit
    assert r.exit_code is None and r.signal == 9


def test_filling_the_disk_gets_enospc():
    code = ("import errno\nf=open('/workspace/fill','wb')\ntry:\n while True: f.write(b'x'*65536); f.flush()\n"
            "except OSError as e:\n print('errno', e.errno)\n")
    r = run(py(code), limits=warden.Limits(disk_mb=8))
    assert r.stdout.strip() == b"errno 28"
    assert "disk" in r.limits_hit


def test_tmp_counts_against_the_same_quota():
    r = run(["/bin/sh", "-c", "head -c 5M /dev/zero > /workspace/a && head -c 5M /dev/zero > /tmp/b; echo rc=$?"],
            limits=warden.Limits(disk_mb=8))
    assert b"rc=1" in r.stdout
    assert "disk" in r.limits_hit


@pytest.mark.parametrize("argv", [["/bin/sleep", "100"],
                                  ["/bin/sh", "-c", "trap '' TERM; (trap '' TERM; sleep 100 &) ; sleep 100"],
                                  ["/bin/sh", "-c", "sleep 100 & kill -STOP $$"]])
def test_timeout_kills_everything(argv):
    mark = f"warden-test-{os.getpid()}-{time.monotonic_ns()}"
    t = time.monotonic()
    r = warden.run(argv, limits=warden.Limits(wall_time_s=0.5), env={"MARK": mark})
    assert r.reason == "timeout"
    assert time.monotonic() - t < 5
    # Nothing of the sandbox survives: no process anywhere carries its marker.
    assert not _processes_with(mark)


def _processes_with(mark: str) -> list[int]:
    needle = f"MARK={mark}".encode()
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(p))
            except OSError:
                pass
    return found


def test_running_sandbox_posture_from_the_host():
    box = {}
    mark = f"warden-posture-{os.getpid()}-{time.monotonic_ns()}"

    def go():
        box["r"] = warden.run(["/bin/sleep", "2"], limits=warden.Limits(wall_time_s=10),
                              env={"MARK": mark})

    t = threading.Thread(target=go)
    t.start()
    deadline = time.monotonic() + 5
    pids = []
    while time.monotonic() < deadline and not pids:
        pids = [p for p in _processes_with(mark) if open(f"/proc/{p}/comm").read().strip() == "sleep"]
        time.sleep(0.02)
    assert pids, "the sandboxed sleep did not show up"
    pid = pids[0]
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
    assert status["Seccomp"].strip() == "2"
    assert status["NoNewPrivs"].strip() == "1"
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap].strip(), 16) == 0
    for ns in ("user", "pid", "mnt", "net", "ipc", "uts", "cgroup"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    t.join()
    assert box["r"].ok


def test_read_only_bind_below_tmp_stays_visible_over_the_sandbox_tmp(tmp_path, host_id):
    # A Python in a virtualenv under /tmp (a fresh clone there) must stay reachable although
    # the sandbox's own /tmp is a tmpfs; the rest of the host's /tmp stays invisible.
    from warden import _core
    from warden.host import environ
    from warden.providers.native import runner

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f.txt").write_text("visible")
    (tmp_path / "secret.txt").write_text("hidden")
    os.chmod(tmp_path, 0o755)
    cfg = runner.base_config(warden.Limits())
    cfg.update(host_id.config())
    cfg.update(ro_paths=[*cfg["ro_paths"], str(shared)])
    box = _core.PreparedSandbox(cfg)
    out = box.start(["/bin/sh", "-c", f"cat {shared}/f.txt; cat {tmp_path}/secret.txt; "
                     f"echo x > {shared}/new; echo w > /tmp/ok && echo tmp-writable"],
                    environ.sandbox_env(None), ["/bin/sh"], timeout_s=10.0)
    if out["mount_ns_fd"] >= 0:
        os.close(out["mount_ns_fd"])
    # cat of the secret and the write into the bind fail (on stderr); the rest succeeds.
    assert out["stdout"] == b"visibletmp-writable\n", out
    assert b"hidden" not in out["stdout"] + out["stderr"]
    assert not (shared / "new").exists()
