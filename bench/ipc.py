"""IPC benchmark: the frame codec, and warm calls into a worker process over a socketpair.

Runs side by side in one run: the floor (a bare Python echo over a socketpair, no codec), the
codec alone, a warm ``call`` round trip, batches of small items, and a large payload inline,
as a sealed memfd and as a file. The worker is a plain subprocess (no sandbox), so this
measures the protocol; bench/calls.py measures it inside the sandbox.

    python bench/ipc.py [--calls 20000] [--batches 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from warden.wire.channel import Channel
from warden.wire.codec import FrameReader, encode
from warden.wire.large import memfd_ref, put_large

PLUGIN = """
def handle(action, payload):
    if action == "len":
        return len(payload)
    return payload

def handle_batch(action, items):
    return items
"""

SLOW_BATCH_PLUGIN = """
def handle(action, payload):
    return payload
"""


def percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000.0


def start_worker(entry: Path, data_dir: Path, max_frame: int) -> tuple[Channel, subprocess.Popen]:
    host, child = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "warden.guest.worker", "--fd", str(child.fileno()), "--entry",
         str(entry), "--data-dir", str(data_dir), "--max-frame", str(max_frame)],
        pass_fds=[child.fileno()])
    child.close()
    return Channel(host, max_send=max_frame, max_recv=max_frame), proc


def bench_floor(n: int) -> list[int]:
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        while True:
            data = b.recv(65536)
            if not data:
                os._exit(0)
            b.sendall(data)
    b.close()
    samples = []
    msg = encode({"id": 1, "op": "call", "action": "echo", "payload": 1})
    for _ in range(n):
        t = time.perf_counter_ns()
        a.sendall(msg)
        a.recv(65536)
        samples.append(time.perf_counter_ns() - t)
    a.close()
    os.waitpid(pid, 0)
    return samples


def bench_codec(n: int) -> float:
    reader = FrameReader()
    msg = {"id": 1, "op": "call", "action": "echo", "payload": {"x": 1, "y": "two"}}
    t = time.perf_counter_ns()
    for _ in range(n):
        reader.feed(encode(msg))
        reader.read()
    return (time.perf_counter_ns() - t) / n / 1000.0


def timed_calls(chan: Channel, n: int, op: str, **fields) -> list[int]:
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        chan.call(op, **fields)
        samples.append(time.perf_counter_ns() - t)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--large-mb", type=int, default=8)
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    floor = bench_floor(args.calls)
    rows.append(("bare socketpair echo, both ends sleeping, p50 / p99 (floor)",
                 f"{percentile(floor, .5):.1f} / {percentile(floor, .99):.1f} us"))
    rows.append(("codec: encode + decode one small frame", f"{bench_codec(100_000):.2f} us"))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        (root / "fast.py").write_text(PLUGIN)
        (root / "slow.py").write_text(SLOW_BATCH_PLUGIN)
        large = args.large_mb << 20
        chan, proc = start_worker(root / "fast.py", root / "data", max_frame=2 * large)
        try:
            for _ in range(2000):  # warm up both sides
                chan.call("call", action="echo", payload=1)
            ping = timed_calls(chan, args.calls, "ping")
            rows.append(("ping round trip, p50 / p99",
                         f"{percentile(ping, .5):.1f} / {percentile(ping, .99):.1f} us"))
            call = timed_calls(chan, args.calls, "call", action="echo", payload={"x": 1})
            rows.append(("warm call round trip, p50 / p99",
                         f"{percentile(call, .5):.1f} / {percentile(call, .99):.1f} us"))
            rows.append(("warm calls per second (one caller)",
                         f"{len(call) / (sum(call) / 1e9):,.0f}"))
            for kind, items in (("ints", list(range(args.batch_size))),
                                ("2-field records", [{"id": i, "v": "x"}
                                                     for i in range(args.batch_size)])):
                t = time.perf_counter()
                for _ in range(args.batches):
                    chan.call("batch", action="echo", items=items)
                rate = args.batches * len(items) / (time.perf_counter() - t)
                rows.append((f"batch of {len(items)} {kind}, handle_batch: items/s",
                             f"{rate:,.0f}"))

            blob = os.urandom(large)
            t = time.perf_counter()
            for _ in range(10):
                chan.call("call", action="len", payload=blob)
            rows.append((f"{args.large_mb} MiB payload inline in the frame",
                         f"{(time.perf_counter() - t) / 10 * 1000:.2f} ms"))
            t = time.perf_counter()
            for _ in range(10):
                ref, fd = memfd_ref(blob)
                try:
                    chan.call("call", action="len", payload=ref, fds=[fd])
                finally:
                    os.close(fd)
            rows.append((f"{args.large_mb} MiB payload as a sealed memfd",
                         f"{(time.perf_counter() - t) / 10 * 1000:.2f} ms"))
            t = time.perf_counter()
            for _ in range(10):
                ref = put_large(blob, root / "data")
                chan.call("call", action="len", payload=ref)
                os.unlink(root / "data" / ref["$file"])
            rows.append((f"{args.large_mb} MiB payload as a file in data/",
                         f"{(time.perf_counter() - t) / 10 * 1000:.2f} ms"))
        finally:
            chan.call("shutdown")
            chan.close()
            proc.wait()

        chan, proc = start_worker(root / "slow.py", root / "data", max_frame=16 << 20)
        try:
            chan.call("batch", action="echo", items=items)
            t = time.perf_counter()
            for _ in range(args.batches):
                chan.call("batch", action="echo", items=items)
            rate = args.batches * len(items) / (time.perf_counter() - t)
            rows.append((f"batch of {len(items)} {kind}, loop over handle: items/s",
                         f"{rate:,.0f}"))
        finally:
            chan.close()
            proc.wait()

    width = max(len(name) for name, _ in rows)
    print(f"warden IPC benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    ratio = percentile(call, .5) / percentile(floor, .5)
    print(f"  warm call p50 / floor p50: {ratio:.2f}x  (target: warm call p50 <= 30 us, "
          "batches >= 1,000,000 items/s)")


if __name__ == "__main__":
    main()
