"""The server streams: file bodies of any size pass through it a chunk at a time (its Python
allocations stay far below the size), and sandbox work never blocks the event loop."""

from __future__ import annotations

import hashlib
import threading
import tracemalloc

_MIB = 1 << 20
SIZE = 48 * _MIB


def _body(total: int, chunk: int = 256 << 10):
    block = b"\xab" * chunk
    for _ in range(total // chunk):
        yield block


def test_a_large_upload_and_download_are_not_buffered(service):
    with service.client("acme") as c:
        sid = c.post("/v1/sandboxes", json={"limits": {"disk_mb": 64, "wall_time_s": 120,
                                                       "memory_mb": 256}}).json()["id"]
        try:
            tracemalloc.start()
            try:
                r = c.put(f"/v1/sandboxes/{sid}/files/big", content=_body(SIZE))
                assert r.status_code == 201 and r.json()["size"] == SIZE, r.text
                _, up_peak = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                digest, got = hashlib.sha256(), 0
                with c.stream("GET", f"/v1/sandboxes/{sid}/files/big") as s:
                    assert s.status_code == 200
                    for part in s.iter_bytes():
                        digest.update(part)
                        got += len(part)
                _, down_peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert got == SIZE
            assert digest.digest() == hashlib.sha256(b"\xab" * SIZE).digest()
            # Client and server share this process: both sides together stay bounded.
            print(f"peaks: up {up_peak / _MIB:.1f} MiB, down {down_peak / _MIB:.1f} MiB")
            assert up_peak < 16 * _MIB, up_peak
            assert down_peak < 16 * _MIB, down_peak
        finally:
            c.delete(f"/v1/sandboxes/{sid}")


def test_a_long_exec_does_not_hold_up_other_requests(service):
    with service.client("acme") as c:
        sid = c.post("/v1/sandboxes", json={"limits": {"wall_time_s": 60}}).json()["id"]
        try:
            c.post(f"/v1/sandboxes/{sid}/exec", json={"argv": ["rm", "-f", "go"]})
            done = threading.Event()

            def long_exec():
                with service.client("acme") as c2:
                    # It waits for a file that only appears after the other requests answered.
                    c2.post(f"/v1/sandboxes/{sid}/exec", json={
                        "argv": ["sh", "-c", "while [ ! -e go ]; do sleep 0.05; done"],
                        "timeout": 50})
                done.set()

            t = threading.Thread(target=long_exec)
            t.start()
            other = c.post("/v1/sandboxes", json={}).json()["id"]
            assert c.get("/healthz").status_code == 200
            assert c.get(f"/v1/sandboxes/{sid}").status_code == 200
            r = c.post(f"/v1/sandboxes/{other}/exec", json={"argv": ["echo", "meanwhile"]})
            assert r.json()["stdout"] == "meanwhile\n"
            assert not done.is_set()
            c.put(f"/v1/sandboxes/{sid}/files/go", content=b"")
            t.join(60)
            assert done.is_set()
            c.delete(f"/v1/sandboxes/{other}")
        finally:
            c.delete(f"/v1/sandboxes/{sid}")
