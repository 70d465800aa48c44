"""Per-user kernel budgets: one sandbox exhausting them must not take them from host root or
from the next sandbox.

The kernel charges inotify instances, queued signals, POSIX message-queue bytes, pipe buffers
and descriptors in flight over unix sockets to a user: to the sandbox user's host uid, and up
the user-namespace chain to the owner of each namespace (kernel/ucount.c). Each test makes
sandbox A exhaust one budget with hostile code and keep what it took (a process that stays
alive in A), then checks that host root and a sandbox B made right after can still get the
same thing. With one host uid shared by every sandbox, or a namespace owned by host root, the
second half fails: that is what these tests catch.
"""

from __future__ import annotations

import errno
import json
import subprocess
import textwrap

import pytest
import warden

from tests.security.conftest import PY, py

PRELUDE = textwrap.dedent("""\
    import array, ctypes, errno, fcntl, json, os, signal, socket, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    def out(**kw):
        print(json.dumps(kw), flush=True)
    """)

# Defined once in sandbox A's worker: starts `code` in a process of its own that keeps what
# it took until the sandbox is closed, and returns the line it printed.
HOLD = textwrap.dedent("""\
    def hold(code):
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-I", "-c", code], stdout=subprocess.PIPE)
        globals().setdefault("_held", []).append(p)
        return p.stdout.readline().decode()
    """)

# After exhausting, the holder sleeps (bounded) until the sandbox is closed and kills it.
HOLD_TAIL = "\ntime.sleep(300)\n"


def _hold_in(box: warden.Sandbox, code: str) -> dict:
    line = box.call(HOLD, PRELUDE + textwrap.dedent(code) + HOLD_TAIL, timeout=60)
    assert line, "the holder in sandbox A printed nothing"
    return json.loads(line)


def _on_host(code: str) -> dict:
    """`code` as host root, in a fresh interpreter."""
    r = subprocess.run([PY, "-I", "-c", PRELUDE + textwrap.dedent(code)], capture_output=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return json.loads(r.stdout)


def _in_sandbox_b(code: str) -> dict:
    r = warden.run(py(PRELUDE + textwrap.dedent(code)), limits=warden.Limits(wall_time_s=60))
    assert r.ok, (r.reason, r.stderr.decode(errors="replace"))
    return json.loads(r.stdout)


@pytest.fixture
def sandbox_a():
    with warden.Sandbox(limits=warden.Limits(wall_time_s=60)) as box:
        yield box


# --- inotify ---------------------------------------------------------------------------------

INOTIFY_EXHAUST = """
    fds = []
    while len(fds) < 100000:
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            break
        fds.append(fd)
    out(count=len(fds), errno=ctypes.get_errno())
"""
INOTIFY_PROBE = """
    fd = libc.inotify_init1(os.O_CLOEXEC)
    out(ok=fd >= 0, errno=0 if fd >= 0 else ctypes.get_errno())
"""


# The scheme depends on the kernel, not on the cgroup version; two tests also run on the v2
# guest's older kernel (scripts/v2-guest), which keeps its run short.
@pytest.mark.cgroup2guest
def test_inotify_exhaustion_stays_in_its_sandbox(sandbox_a):
    held = _hold_in(sandbox_a, INOTIFY_EXHAUST)
    assert held["errno"] == errno.EMFILE, held
    assert _on_host(INOTIFY_PROBE) == {"ok": True, "errno": 0}
    assert _in_sandbox_b(INOTIFY_PROBE) == {"ok": True, "errno": 0}


def test_inotify_instances_have_a_per_sandbox_ceiling(sandbox_a):
    # Far below the host's per-user default (fs.inotify.max_user_instances, 128): the sandbox's
    # own user namespace limit, not the host's, is what stopped it.
    held = _hold_in(sandbox_a, INOTIFY_EXHAUST)
    assert 0 < held["count"] <= 32, held


def test_sandbox_may_not_make_namespaces_even_past_seccomp():
    # seccomp refuses unshare and clone's namespace flags; the user namespace's own limits
    # refuse them as well, so neither layer alone keeps them out.
    r = warden.run(py("print(open('/proc/sys/user/max_user_namespaces').read().strip(),"
                      " open('/proc/sys/user/max_mnt_namespaces').read().strip(),"
                      " open('/proc/sys/user/max_inotify_instances').read().strip())"))
    assert r.ok, r.stderr
    assert r.stdout.split() == [b"0", b"0", b"32"]


# --- queued signals (RLIMIT_SIGPENDING) ------------------------------------------------------

SIGNALS_EXHAUST = """
    sig = int(signal.SIGRTMIN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [sig])
    n = 0
    while n < 1000000 and libc.sigqueue(os.getpid(), sig, ctypes.c_void_p(0)) == 0:
        n += 1
    out(count=n, errno=ctypes.get_errno())
"""
SIGNALS_PROBE = """
    sig = int(signal.SIGRTMIN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [sig])
    rc = libc.sigqueue(os.getpid(), sig, ctypes.c_void_p(0))
    out(ok=rc == 0, errno=0 if rc == 0 else ctypes.get_errno())
"""
TIMER_PROBE = """
    # timer_create preallocates its signal, charged like a queued one.
    tid = ctypes.c_void_p()
    rc = libc.timer_create(1, None, ctypes.byref(tid))  # CLOCK_MONOTONIC, SIGALRM
    out(ok=rc == 0, errno=0 if rc == 0 else ctypes.get_errno())
"""


def test_queued_signals_stay_in_their_sandbox(sandbox_a):
    held = _hold_in(sandbox_a, SIGNALS_EXHAUST)
    assert held["errno"] == errno.EAGAIN, held
    # The sandbox's own RLIMIT_SIGPENDING stopped it, far below the host's.
    assert 0 < held["count"] <= 1024, held
    for probe in (SIGNALS_PROBE, TIMER_PROBE):
        assert _on_host(probe) == {"ok": True, "errno": 0}
        assert _in_sandbox_b(probe) == {"ok": True, "errno": 0}


# --- POSIX message queues (RLIMIT_MSGQUEUE) --------------------------------------------------

MQ_EXHAUST = """
    libc.mq_open.restype = ctypes.c_int
    n = 0
    while n < 10000:
        q = libc.mq_open(f"/warden-q{n}".encode(), os.O_CREAT | os.O_RDWR, 0o600, None)
        if q < 0:
            break
        n += 1
    out(count=n, errno=ctypes.get_errno())
"""
MQ_PROBE = """
    libc.mq_open.restype = ctypes.c_int
    name = f"/warden-probe-{os.getpid()}".encode()
    q = libc.mq_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600, None)
    err = 0 if q >= 0 else ctypes.get_errno()
    if q >= 0:
        libc.mq_close(q)
        libc.mq_unlink(name)
    out(ok=q >= 0, errno=err)
"""


def test_message_queue_bytes_stay_in_their_sandbox(sandbox_a):
    held = _hold_in(sandbox_a, MQ_EXHAUST)
    assert held["errno"] == errno.EMFILE, held
    # RLIMIT_MSGQUEUE of the sandbox: room for one queue of the default size, not the host's
    # 800 KiB.
    assert held["count"] <= 2, held
    assert _on_host(MQ_PROBE) == {"ok": True, "errno": 0}
    assert _in_sandbox_b(MQ_PROBE) == {"ok": True, "errno": 0}


# --- descriptors in flight (SCM_RIGHTS) ------------------------------------------------------

FDS_EXHAUST = """
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    fd = os.open("/dev/null", os.O_RDONLY)
    sent, err = 0, 0
    while sent < 100000:
        try:
            a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", [fd] * 250))])
        except OSError as e:
            err = e.errno
            break
        sent += 250
    out(count=sent, errno=err)
"""
FDS_PROBE = """
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        socket.send_fds(a, [b"x"], [a.fileno()])
        got = socket.recv_fds(b, 1, 1)[1]
        out(ok=len(got) == 1, errno=0)
    except OSError as e:
        out(ok=False, errno=e.errno)
"""


def test_descriptors_in_flight_stay_in_their_sandbox(sandbox_a):
    # The kernel counts them per host user (user_struct.unix_inflight) against the sender's
    # RLIMIT_NOFILE; host root is exempt, another sandbox is not.
    held = _hold_in(sandbox_a, FDS_EXHAUST)
    assert held["errno"] == errno.ETOOMANYREFS, held
    assert _in_sandbox_b(FDS_PROBE) == {"ok": True, "errno": 0}


# --- pipe buffers (fs.pipe-user-pages-soft) --------------------------------------------------

PIPES_EXHAUST = """
    pipes, err = [], 0
    while len(pipes) < 120:
        r, w = os.pipe()
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError as e:
            err = e.errno
            break
        pipes.append((r, w))
    out(count=len(pipes), errno=err)
"""
PIPES_PROBE = """
    r, w = os.pipe()
    size = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
        err = 0
    except OSError as e:
        err = e.errno
    out(size=size, errno=err)
"""


def test_pipe_buffers_stay_in_their_sandbox(sandbox_a):
    # Past the soft limit a user's new pipes get two pages and may not grow.
    held = _hold_in(sandbox_a, PIPES_EXHAUST)
    assert held["errno"] == errno.EPERM, held
    assert _in_sandbox_b(PIPES_PROBE) == {"size": 65536, "errno": 0}


# --- identity ---------------------------------------------------------------------------------

OWNER_AND_MAP = """
    import fcntl
    NS_GET_OWNER_UID = 0xB704
    fd = os.open("/proc/self/ns/user", os.O_RDONLY)
    owner = array.array("I", [0])
    fcntl.ioctl(fd, NS_GET_OWNER_UID, owner, True)
    rows = [line.split() for line in open("/proc/self/uid_map") if line.strip()]
    out(owner=owner[0], map={int(i): int(o) for i, o, _ in rows})
"""


@pytest.mark.cgroup2guest
def test_each_sandbox_owns_its_namespace_under_its_own_host_id():
    # The owner, as the sandbox sees it, is its own user (1000): the host id the kernel
    # charges up the namespace chain is the sandbox's, not root's (which would read as the
    # overflow id 65534, being unmapped inside).
    import os

    with warden.Sandbox() as a, warden.Sandbox() as b:
        seen = []
        for box in (a, b):
            r = box.exec([PY, "-c", PRELUDE + textwrap.dedent(OWNER_AND_MAP)])
            assert r.ok, r.stderr
            seen.append(json.loads(r.stdout))
        for s in seen:
            assert s["owner"] == 1000, s
            assert s["map"]["1000"] not in (0, os.getuid())
        assert seen[0]["map"]["1000"] != seen[1]["map"]["1000"]
