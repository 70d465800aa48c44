"""Host-wide budgets: kernel memory and kernel objects that one sandbox could take from the
whole host. AIO contexts come from one pool (fs.aio-max-nr), so the calls are refused; socket
buffers are kernel memory that the sandbox pins, so they count against its memory limit (the
cgroup v1 driver turns on the TCP accounting that cgroup v2 does by default)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import textwrap

import pytest
import warden

from tests.security.conftest import py

MiB = 1 << 20

AIO_EXHAUST = textwrap.dedent("""
    import ctypes, json
    libc = ctypes.CDLL(None, use_errno=True)
    ctxs = []
    while len(ctxs) < 100000:
        ctx = ctypes.c_ulong(0)
        if libc.syscall(206, 1024, ctypes.byref(ctx)) != 0:  # io_setup
            break
        ctxs.append(ctx)
    print(json.dumps({"count": len(ctxs), "errno": ctypes.get_errno()}))
""")


def _io_setup_on_host() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    ctx = ctypes.c_ulong(0)
    if libc.syscall(206, 1, ctypes.byref(ctx)) != 0:
        return ctypes.get_errno()
    libc.syscall(207, ctx)  # io_destroy
    return 0


def test_aio_contexts_are_refused_so_the_host_keeps_its_pool():
    with open("/proc/sys/fs/aio-nr") as f:
        before = int(f.read())
    r = warden.run(py(AIO_EXHAUST))
    assert r.ok, r.stderr
    assert json.loads(r.stdout) == {"count": 0, "errno": errno.EPERM}
    assert _io_setup_on_host() == 0
    with open("/proc/sys/fs/aio-nr") as f:
        assert int(f.read()) <= before + 2 * os.cpu_count() * 4  # others' use, not the sandbox's


# --- socket buffers ---------------------------------------------------------------------------

# Opens loopback TCP connections in the sandbox's own network namespace and writes into every
# one of them while nothing reads: each one's send and receive queues fill up to what the
# kernel grants. Reports what send() accepted, which errors ended it, and the host-wide TCP
# memory (/proc/net/sockstat counts pages of every namespace) before and at the peak.
TCP_FILL = textwrap.dedent("""
    import errno, json, socket, time
    def tcp_pages():
        for line in open("/proc/net/sockstat"):
            if line.startswith("TCP:"):
                f = line.split()
                return int(f[f.index("mem") + 1])
    before = tcp_pages()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(256)
    conns = []
    for _ in range(CONNS):
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
        c.setblocking(False)
        conns.append((c, s))
    chunk = b"x" * 65536
    accepted, errors, stalled, peak = 0, {}, 0, before
    deadline = time.monotonic() + 20
    while stalled < 5 and time.monotonic() < deadline and accepted < (3 << 30):
        moved = False
        for c, _ in conns:
            try:
                accepted += c.send(chunk)
                moved = True
            except OSError as e:
                name = errno.errorcode.get(e.errno, str(e.errno))
                errors[name] = errors.get(name, 0) + 1
        peak = max(peak, tcp_pages())
        stalled = 0 if moved else stalled + 1
        if not moved:
            time.sleep(0.05)
    print(json.dumps({"accepted": accepted, "errors": errors, "before": before,
                      "peak": peak}), flush=True)
""")

CONNS = 128


@pytest.mark.cgroup2guest
def test_socket_buffers_count_against_the_memory_limit(monkeypatch):
    """A 64 MiB sandbox filling 128 loopback connections that nobody reads must not pin
    hundreds of MiB of kernel memory: the kernel refuses it more (EAGAIN on the writes) or the
    sandbox is OOM-killed, and the host-wide TCP memory grows by about its limit at most."""
    from warden.host import cgroups

    seen: list[dict] = []
    for cls in (cgroups.V1Cgroup, cgroups.V2Cgroup):
        monkeypatch.setattr(cls, "stats", _spy(cls.stats, seen))
    limit = 64 * MiB
    r = warden.run(py(TCP_FILL.replace("CONNS", str(CONNS))),
                   limits=warden.Limits(memory_mb=64, open_files=1024, wall_time_s=60))
    assert r.ok or r.reason == "memory", (r.reason, r.stderr.decode(errors="replace"))
    if r.ok:
        out = json.loads(r.stdout)
        grown = (out["peak"] - out["before"]) * 4096
        # Without accounting this is several MiB per connection: 128 of them, hundreds of MiB.
        assert grown <= limit + 16 * MiB, out
        assert out["accepted"] <= limit + 16 * MiB, out
        assert "EAGAIN" in out["errors"] or "ENOBUFS" in out["errors"], out
    # The cgroup's own counters agree: what the kernel charged it for sockets stayed within
    # the limit, and the limit was what refused the rest.
    assert seen, "warden.run read no cgroup counters"
    snap = seen[-1]
    if "tcp_max" in snap:  # cgroup v1: the separate TCP counter, limited to the memory limit
        assert snap["tcp_limit"] == limit
        # Charged up to the limit, which is what stopped it; above it only by what the kernel
        # charges without asking (__GFP_NOFAIL for packets in flight), a few MiB, never the
        # hundreds of MiB it pins uncharged. (failcnt is not kept for this counter.)
        assert limit - 16 * MiB <= snap["tcp_max"] <= limit + 8 * MiB, snap
    else:  # cgroup v2: socket memory is part of memory.current, under memory.max
        # The command's own pages are a few MiB; the peak near the limit is its sockets.
        assert limit - 16 * MiB <= snap["peak"] <= limit + 8 * MiB, snap


def _spy(orig, seen: list[dict]):
    def stats(c):
        st = orig(c)
        dirs = [os.path.dirname(f) for f in c.procs_files()] or [c.path]
        snap: dict = {}
        for d in dirs:
            if os.path.exists(f"{d}/memory.kmem.tcp.max_usage_in_bytes"):
                snap["tcp_max"] = _int(f"{d}/memory.kmem.tcp.max_usage_in_bytes")
                snap["tcp_limit"] = _int(f"{d}/memory.kmem.tcp.limit_in_bytes")
            elif os.path.exists(f"{d}/memory.peak"):
                snap["peak"] = _int(f"{d}/memory.peak")
        seen.append(snap)
        return st
    return stats


def _int(path: str) -> int:
    with open(path) as f:
        return int(f.read())
