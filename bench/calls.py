"""Call latency and throughput of warden's plugin engine, side by side with its peers.

    python bench/calls.py [--warm 5000] [--batches 300] [--fresh 50] [--peer 30]

Printed in one run:
  warm call       plugin.call() on a warm worker (engine: pool, middleware, metrics), and the
                  same request straight through the provider and through the bare channel,
                  so that the cost of each layer shows
  batch           plugin.call_batch() with 1,000 small items per call: items per second
  fresh call      a new sandbox from the zygote, one call, teardown; interleaved with the
                  python -c peer, and back to back (where each waits for its sandbox)
  python -c       a fresh interpreter per call (subprocess), the usual "isolation" baseline
  docker run      one container per call, when a Docker daemon answers

Targets: warm p50 <= 30 us, batch >= 1,000,000 items/s, fresh p50 <= 5 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import warden
from warden.providers.base import SandboxSpec
from warden.providers.native.state import state_of

PLUGIN = """
    def handle(action, payload):
        return payload


    def handle_batch(action, items):
        return items
"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def make_plugin(root: str) -> str:
    d = os.path.join(root, "bench")
    os.makedirs(os.path.join(d, "src"))
    with open(os.path.join(d, "plugin.yaml"), "w") as f:
        f.write("name: bench\nresources: {rate_limit: null, timeout_seconds: 30}\n"
                "pool: {min_workers: 1, max_workers: 1, max_calls_per_worker: 1000000000}\n")
    with open(os.path.join(d, "src", "main.py"), "w") as f:
        f.write(textwrap.dedent(PLUGIN))
    return d


def docker_ok() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", type=int, default=5000)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--fresh", type=int, default=50)
    ap.add_argument("--peer", type=int, default=30)
    args = ap.parse_args()

    rows: list[tuple[str, list[float] | None, str]] = []
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp, warden.Engine() as engine:
        plugin = engine.load(make_plugin(tmp))
        provider = engine.provider
        handle = plugin.workers()[0]
        chan = state_of(handle).chan  # the native provider's own record, to time the bare channel

        for _ in range(500):
            plugin.call("echo", 1)
        rows.append(("warm call (engine)", timed(lambda: plugin.call("echo", 1), args.warm), ""))
        rows.append(("warm call (provider)", timed(
            lambda: provider.call(handle, "call", {"action": "echo", "payload": 1}),
            args.warm), ""))
        rows.append(("warm call (channel)", timed(
            lambda: chan.call("call", action="echo", payload=1), args.warm), ""))

        items = list(range(1000))
        plugin.call_batch("echo", items)
        t = time.perf_counter()
        for _ in range(args.batches):
            plugin.call_batch("echo", items)
        batch_s = time.perf_counter() - t
        per_s = args.batches * len(items) / batch_s
        rows.append(("batch, 1,000 items/call", None, f"{per_s:,.0f} items/s"))

        spec: SandboxSpec = handle.spec

        def fresh() -> None:
            h = provider.create(spec)
            try:
                provider.call(h, "call", {"action": "echo", "payload": 1})
            finally:
                provider.destroy(h)

        # Interleaved with its peer, as a service sees fresh calls: the sandbox made ahead
        # when the last one was destroyed (warden.providers.native.prepare) is ready when the next is asked
        # for. Back to back, each call waits for its sandbox to be made: that is throughput.
        argv = [sys.executable, "-c", "print(1)"]
        fresh()
        fresh()
        f_times, py_times = [], []
        for _ in range(args.fresh):
            f_times += timed(fresh, 1)
            py_times += timed(lambda: subprocess.run(argv, capture_output=True, check=True), 1)
        rows.append(("fresh sandboxed call", f_times, ""))
        rows.append(("  back to back", timed(fresh, args.fresh), ""))
    rows.append(("python -c per call", py_times, ""))
    if docker_ok():
        # No registry is reachable: the peer runs warden's own local image (built from this
        # host's Python by `warden images build` when missing), or WARDEN_DOCKER_IMAGE.
        from warden.providers.docker import images

        image = os.environ.get("WARDEN_DOCKER_IMAGE") or images.default_image_tag()
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                          check=False).returncode != 0:
            subprocess.run([sys.executable, "-m", "warden", "images", "build"], check=True)
        dargv = ["docker", "run", "--rm", "--network", "none", image, "python3", "-c",
                 "print(1)"]
        subprocess.run(dargv, capture_output=True, check=True)
        rows.append(("docker run per call", timed(
            lambda: subprocess.run(dargv, capture_output=True, check=True),
            max(3, args.peer // 3)), ""))
    else:
        rows.append(("docker run per call", None, "skipped: no Docker daemon answers"))

    base = pct(next(x for n, x, _ in rows if n == "python -c per call"), 50)
    print(f"{'':26}{'p50':>12}{'p99':>12}{'calls/s':>12}   {'vs python -c (p50)':>20}")
    for name, xs, note in rows:
        if xs is None:
            print(f"{name:26}{note:>36}")
            continue
        p50, p99 = pct(xs, 50), pct(xs, 99)
        unit, scale = ("us", 1e6) if p50 < 1e-3 else ("ms", 1e3)
        print(f"{name:26}{p50 * scale:>9.1f} {unit}{p99 * scale:>9.1f} {unit}"
              f"{len(xs) / sum(xs):>12,.0f}   {base / p50:>17,.1f}x")
    print("targets: warm p50 <= 30 us, batch >= 1,000,000 items/s, fresh p50 <= 5 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
