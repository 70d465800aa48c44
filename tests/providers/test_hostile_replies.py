"""Replies from a hostile worker, on every provider: code in the sandbox writes its own frames
(and descriptors) to the worker's channel, ahead of the reply the worker would send.

What must hold (warden.wire.bounds): a reply decodes within a bound of the sandbox's memory
limit, or is refused before it is decoded; a reply carries at most one descriptor, and any
other is closed at once; after any refused reply nothing the worker sent earlier answers a
later request: the sandbox is dead and replaced. Descriptors and memfds are native-only: the
Docker attach stream carries bytes alone."""

from __future__ import annotations

import os

import pytest
from warden.errors import PayloadTooLarge, ProtocolError, TimeoutExceeded, WorkerCrashed
from warden.providers.base import SandboxSpec
from warden.spec.limits import Limits
from warden.wire import bounds, codec

# The code in the sandbox finds its worker's channel and the id of the request it serves, and
# writes what ``spec`` says straight to the channel's socket.
HOSTILE = r'''
def hostile(spec):
    import fcntl, gc, os, socket, struct, sys, time
    import msgpack

    live = set(os.listdir("/proc/self/fd"))
    chan = next(o for o in gc.get_objects()
                if type(o).__name__ == "Channel" and str(o.fileno()) in live)
    f = sys._getframe()
    while "request_id" not in f.f_locals:
        f = f.f_back
    rid = f.f_locals["request_id"]
    sock = socket.socket(fileno=os.dup(chan.fileno()))
    sock.setblocking(True)
    rights = socket.SOL_SOCKET, socket.SCM_RIGHTS

    def frame(msg):
        body = msgpack.packb(msg, use_bin_type=True)
        return struct.pack(">I", len(body)) + body

    kind, n = spec["kind"], spec.get("n", 0)
    try:
        if kind == "maps":
            # {"id", "ok": True, "result": [{}, {}, ...]}: n one-byte empty maps.
            head = b"\x83" + msgpack.packb({"id": rid, "ok": True})[1:] + b"\xa6result\xdd"
            sock.sendall(struct.pack(">I", len(head) + 4 + n) + head + struct.pack(">I", n))
            sock.sendall(b"\x80" * n)
        elif kind == "oversized":
            head = msgpack.packb({"id": rid})
            sock.sendall(struct.pack(">I", n) + head)
            zeros, left = bytes(1 << 20), n - len(head)
            while left:
                left -= sock.send(zeros[:left])
        elif kind == "bad_error":
            sock.sendall(frame({"id": rid, "ok": False, "error": 5}))
        elif kind == "fds":
            # A frame that never ends, its bytes each sent with `per` descriptors.
            r, w = os.pipe()
            fds = struct.pack(f"{spec['per']}i", *[r] * spec["per"])
            sock.sendmsg([struct.pack(">I", 1 << 20)], [(*rights, fds)])
            for _ in range(n):
                sock.sendmsg([b"\x00"], [(*rights, fds)])
        elif kind in ("memfd", "hugetlb"):
            # MFD_HUGETLB (4): huge pages, which the host would map from its own pool.
            fd = os.memfd_create("payload", os.MFD_ALLOW_SEALING | (4 if kind == "hugetlb" else 0))
            os.ftruncate(fd, n)  # a hole: it costs this sandbox nothing
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK
                        | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            sock.sendmsg([frame({"id": rid, "ok": True, "result": {"$fd": 0}})],
                         [(*rights, struct.pack("i", fd))])
        elif kind == "unsealed":
            # A writable memfd that this sandbox keeps changing while the host would read it.
            import threading
            fd = os.memfd_create("payload", os.MFD_ALLOW_SEALING)
            os.write(fd, b"a" * n)

            def scribble():
                while True:
                    os.pwrite(fd, os.urandom(64), 0)
            threading.Thread(target=scribble, daemon=True).start()
            sock.sendmsg([frame({"id": rid, "ok": True, "result": {"$fd": 0}})],
                         [(*rights, struct.pack("i", fd))])
        elif kind == "pipe":
            # {"$pipe"}: announce n bytes, send `sent` of them, then close (or hold) the pipe.
            r, w = os.pipe()
            fd = os.memfd_create("payload") if spec.get("not_a_pipe") else r
            sock.sendmsg([frame({"id": rid, "ok": True, "result": {"$pipe": 0, "size": n}})],
                         [(*rights, struct.pack("i", fd))])
            os.write(w, b"p" * spec.get("sent", 0))
            if not spec.get("hold"):
                os.close(w)
        if spec.get("then_next"):
            # What the worker would answer the next request, sent now.
            sock.sendall(frame({"id": rid + 1, "ok": True, "result": "evil"}))
    except OSError:
        pass  # the host closed the channel
    if spec.get("hang"):
        time.sleep(120)
    return "genuine"
'''
DOUBLE = "def dbl(x):\n    return x * 2\n"
MEMORY_MB = 128
BUDGET = bounds.decode_budget(MEMORY_MB << 20)


def _hostile(provider, handle, timeout: float = 60.0, **spec):
    return provider.call(handle, "call_fn", {"source": HOSTILE, "payload": spec},
                         timeout=timeout)


def _small(fresh):
    return fresh(SandboxSpec(limits=Limits(memory_mb=MEMORY_MB, wall_time_s=60)))


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def _after_refusal(provider, handle) -> None:
    """The sandbox that sent a refused reply is dead; no later request is answered by
    anything it sent before."""
    assert not provider.usable(handle)
    if provider.name == "native":
        with pytest.raises(WorkerCrashed):
            provider.call(handle, "call_fn", {"source": DOUBLE, "payload": 21}, timeout=30)
    else:
        # The next request gets a fresh container.
        assert provider.call(handle, "call_fn", {"source": DOUBLE, "payload": 21},
                             timeout=60) == 42


def test_a_frame_of_millions_of_empty_maps_is_refused_before_it_is_decoded(provider, fresh):
    h = _small(fresh)
    n = codec.DEFAULT_MAX_FRAME - 64  # a frame within the cap: 16 million empty maps
    assert n * bounds.COST_PER_BYTE > BUDGET
    _reset_peak_rss()
    before = _peak_rss()
    with pytest.raises(ProtocolError, match="decode budget"):
        _hostile(provider, h, kind="maps", n=n, hang=True)
    grown = _peak_rss() - before
    # Decoded, the frame would be 16 million dicts (over 1 GiB); refused, it costs the host
    # little more than the frame's own bytes.
    assert grown < BUDGET, f"host peak RSS grew by {grown >> 20} MiB"
    _after_refusal(provider, h)


@pytest.mark.parametrize("kind", ["oversized", "bad_error"])
def test_after_a_refused_reply_a_reply_sent_ahead_answers_nothing(provider, fresh, kind):
    h = _small(fresh)
    with pytest.raises(ProtocolError):
        _hostile(provider, h, kind=kind, n=codec.DEFAULT_MAX_FRAME + 1, then_next=True)
    _after_refusal(provider, h)


def _host_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("per", [1, 8])
def test_descriptors_beyond_what_a_reply_carries_are_closed_at_once(provider, fresh, per):
    if provider.name != "native":
        pytest.skip("the Docker attach stream carries no descriptors")
    h = _small(fresh)
    before = _host_fds()
    with pytest.raises(ProtocolError, match="descriptors"):
        _hostile(provider, h, timeout=20, kind="fds", per=per, n=240 // per, hang=True)
    # Before the sandbox is destroyed: what it sent is already closed.
    assert _host_fds() - before < 20
    _after_refusal(provider, h)


@pytest.mark.parametrize("size, error", [(64 << 20, ProtocolError),
                                         (BUDGET + (256 << 20), PayloadTooLarge)])
def test_a_sparse_or_oversized_memfd_is_refused_by_its_real_size(provider, fresh, size, error):
    if provider.name != "native":
        pytest.skip("the Docker attach stream carries no descriptors")
    h = _small(fresh)
    before = _host_fds()
    with pytest.raises(error):
        _hostile(provider, h, kind="memfd", n=size, hang=True)
    assert _host_fds() - before < 20
    _after_refusal(provider, h)


def test_a_memfd_of_huge_pages_is_refused_and_the_worker_replaced(provider, fresh):
    """A sealed MFD_HUGETLB memfd: mapping it would take the host's huge pages (or fail with
    ENOMEM where the host has none); it is a ProtocolError, never a bare OSError, and the
    sandbox is replaced at once."""
    if provider.name != "native":
        pytest.skip("the Docker attach stream carries no descriptors")
    h = _small(fresh)
    before = _host_fds()
    with pytest.raises(ProtocolError, match="huge pages"):
        _hostile(provider, h, kind="hugetlb", n=2 << 20, hang=True)
    assert _host_fds() - before < 20
    _after_refusal(provider, h)


def test_an_unsealed_memfd_the_sandbox_keeps_changing_is_refused(provider, fresh):
    """Mapped, it could change under the host's reader (and shrink it into SIGBUS): a reply's
    memfd must come sealed against writes, shrinking and growing."""
    if provider.name != "native":
        pytest.skip("the Docker attach stream carries no descriptors")
    h = _small(fresh)
    before = _host_fds()
    with pytest.raises(ProtocolError, match="not sealed"):
        _hostile(provider, h, kind="unsealed", n=4 << 20, hang=True)
    assert _host_fds() - before < 20
    _after_refusal(provider, h)


@pytest.mark.parametrize("spec, error, match", [
    # Over the bound: refused by the size it announces, before anything is allocated.
    ({"n": BUDGET + 1}, PayloadTooLarge, "pipe payload"),
    # Fewer bytes than announced, then the end of the pipe.
    ({"n": 8 << 20, "sent": 1000}, ProtocolError, "ended after 1000"),
    # A descriptor that is not a pipe where a pipe is named.
    ({"n": 10, "not_a_pipe": True}, ProtocolError, "not a pipe"),
])
def test_a_pipe_payload_that_breaks_its_word_is_refused(provider, fresh, spec, error, match):
    if provider.name != "native":
        pytest.skip("the Docker attach stream carries no descriptors")
    h = _small(fresh)
    before = _host_fds()
    _reset_peak_rss()
    peak = _peak_rss()
    with pytest.raises(error, match=match):
        _hostile(provider, h, kind="pipe", hang=True, **spec)
    assert _peak_rss() - peak < 64 << 20
    assert _host_fds() - before < 20
    _after_refusal(provider, h)


def test_a_pipe_payload_that_never_comes_ends_at_the_deadline(provider, fresh):
    """The sandbox announces as large a result as its bound allows and holds the pipe open
    after a few bytes: the call ends at its deadline and the sandbox is killed; the host does
    not wait for ever, nor set aside memory for bytes that never came."""
    if provider.name != "native":
        pytest.skip("the Docker attach stream carries no descriptors")
    h = _small(fresh)
    _reset_peak_rss()
    peak = _peak_rss()
    with pytest.raises(TimeoutExceeded):
        _hostile(provider, h, timeout=3, kind="pipe", n=BUDGET, sent=10, hold=True, hang=True)
    assert _peak_rss() - peak < 64 << 20
    assert not provider.usable(h)
