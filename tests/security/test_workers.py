"""Python workers from the zygote, inspected from the host through /proc: the zygote is a clean
interpreter started by exec (no host secrets in its environment, no inherited descriptors),
and each worker it forks runs in the full sandbox (seccomp, no_new_privs, no capabilities, new
namespaces, its own cgroup)."""

from __future__ import annotations

import os
import time

import pytest
import warden
from warden.providers.native.state import state_of

from tests.plugins.test_plugins import native_ok

SECRET = "WARDEN_TEST_HOST_SECRET"


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


@pytest.fixture
def box(monkeypatch):
    native_ok()
    monkeypatch.setenv(SECRET, "s3cr3t-of-the-host")
    # A zygote of its own, started now, with the secret in this process's environment.
    from warden.providers.base import SandboxSpec
    from warden.providers.native import NativeProvider

    provider = NativeProvider()
    try:
        yield provider, provider.create(SandboxSpec(limits=warden.Limits()))
    finally:
        provider.close()


def test_the_zygote_is_exec_d_clean(box):
    provider, _ = box
    zpid = provider._zygote._proc.pid
    with open(f"/proc/{zpid}/environ", "rb") as f:
        env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if e)
    assert SECRET.encode() not in env and set(env) <= {b"PATH", b"LANG"}
    with open(f"/proc/{zpid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert b"-I" in argv  # isolated mode: no PYTHON* variables, no user site
    # Beyond stdio: its one control socket, and the pipe on which the maker waiting for the
    # next request will say it answered. Nothing of the host's descriptors (its sockets,
    # pidfds, namespaces of sandboxes) came along, and nothing of a sandbox it made stayed:
    # each is made by a maker process of its own, which exits. While a maker hands over a
    # sandbox made ahead in the background (the preparer), the zygote may hold a descriptor
    # for a moment: the steady state is what is checked.
    deadline = time.monotonic() + 10
    while True:
        rest = _fds(zpid, above=2)
        if sorted(t.split(":")[0] for t in rest) == ["pipe", "socket"] or \
                time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert sorted(t.split(":")[0] for t in rest) == ["pipe", "socket"], rest
    host = _fds(os.getpid(), above=2)
    assert not {t for t in rest if t.startswith("socket:")} & set(host)


def _fds(pid: int, above: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if int(fd) > above:
            try:
                out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except FileNotFoundError:
                pass  # the listing's own descriptor, closed meanwhile
    return out


def _worker_of(init: int) -> int:
    with open(f"/proc/{init}/task/{init}/children") as f:
        (worker,) = (int(p) for p in f.read().split())
    return worker


def test_a_worker_runs_in_the_whole_sandbox(box):
    provider, handle = box
    init = state_of(handle).pid
    # A call first: it is answered only once the worker serves.
    src = ("import os\n"
           "def f(x):\n"
           "    return os.getpid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n")
    inside = provider.call(handle, "call_fn", {"source": src, "payload": None})
    worker = _worker_of(init)
    zpid = provider._zygote._proc.pid
    for pid in (init, worker):
        st = _status(pid)
        assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1"
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[cap], 16) == 0, cap
        for ns in ("user", "pid", "mnt", "net", "ipc", "uts", "cgroup"):
            mine = os.readlink(f"/proc/{pid}/ns/{ns}")
            assert mine != os.readlink(f"/proc/self/ns/{ns}"), ns
            assert mine != os.readlink(f"/proc/{zpid}/ns/{ns}"), ns
        with open(f"/proc/{pid}/cgroup") as f:
            mine = f.read()
        with open("/proc/self/cgroup") as f:
            host = f.read()
        assert mine != host  # a cgroup of its own, below warden's
        with open(f"/proc/{pid}/environ", "rb") as f:
            assert SECRET.encode() not in f.read()
    # The worker holds its channel and nothing else; the init only its pipes to the host (the
    # status pipe, and its report pipe until it has said it is ready), never the channel.
    rest = _fds(worker, above=2)
    assert len(rest) == 1 and rest[0].startswith("socket:"), rest
    rest = _fds(init, above=2)
    assert rest and all(t.startswith("pipe:") for t in rest), rest
    # Inside, pid 1 is warden's init and the worker pid 2; no host process is seen.
    assert inside == [2, [1, 2]]
    with open(f"/proc/{init}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"warden-init", b"--worker"]
