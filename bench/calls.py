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
  32 MiB          a 32 MiB bytes payload through a plugin with max_memory_mb: 64 and back:
                  echoed (the handler returns the payload) and reversed (one new copy), with
                  the sandbox's memory peak above its use before the call (peaks after a
                  first call of the same size: memory the worker kept from it is not
                  counted again); on the native provider, and on Docker when a daemon
                  answers; 12 and 4 MiB too, which fit Docker's 16 MiB frames (--only-large)

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
        if action == "reverse":
            out = bytearray(payload)
            out.reverse()
            return out
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


def make_plugin(root: str, memory_mb: int = 256) -> str:
    d = os.path.join(root, f"bench{memory_mb}")
    os.makedirs(os.path.join(d, "src"))
    with open(os.path.join(d, "plugin.yaml"), "w") as f:
        f.write(f"name: bench\nresources: {{rate_limit: null, timeout_seconds: 30, "
                f"max_memory_mb: {memory_mb}}}\n"
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


def _usage(cg) -> int:
    dirs = getattr(cg, "_dirs", None)
    path = (os.path.join(dirs["memory"], "memory.usage_in_bytes") if dirs is not None
            else os.path.join(cg.path, "memory.current"))
    with open(path) as f:
        return int(f.read())


def large_rows(tmp: str, n: int, docker: bool) -> list[tuple[str, list[float] | None, str]]:
    """The large round trips, 32, 12 and 4 MiB (the last two under Docker's frame cap):
    (name, times, note with MB/s and the sandbox's peak above its use before the call)."""
    rows: list[tuple[str, list[float] | None, str]] = []
    for provider in ("native", "docker"):
        if provider == "docker" and not docker:
            rows.append(("large round trips, docker", None, "skipped: no Docker daemon answers"))
            continue
        with warden.Engine(provider) as engine:
            plugin = engine.load(make_plugin(os.path.join(tmp, provider), 64))
            for mib in (32, 12, 4):
                data = os.urandom(mib << 20)
                for action in ("echo", "reverse"):
                    rows.append(_large_row(plugin, provider, action, data, n))
    return rows


def _large_row(plugin, provider: str, action: str, data: bytes,
               n: int) -> tuple[str, list[float] | None, str]:
    name = f"{len(data) >> 20} MiB {action}, {provider}"
    try:
        plugin.call(action, data)
    except warden.WardenError as exc:
        return (name, None, f"fails: {type(exc).__name__}")
    grown = ""
    if provider == "native":
        cg = state_of(plugin.workers()[0]).cgroup
        window, before = cg.peak_window(), _usage(cg)
        plugin.call(action, data)
        peak = window.finish() if window is not None else None
        if peak is not None:
            grown = f", peak +{(peak - before) / (1 << 20):.1f} MiB"
    try:
        times = timed(lambda: plugin.call(action, data), n)
    except warden.WardenError as exc:
        return (name, None, f"fails: {type(exc).__name__}")
    rate = 2 * len(data) / pct(times, 50) / 1e6
    return (name, times, f"{rate:,.0f} MB/s{grown}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", type=int, default=5000)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--fresh", type=int, default=50)
    ap.add_argument("--peer", type=int, default=30)
    ap.add_argument("--large", type=int, default=10, help="32 MiB round trips per row")
    ap.add_argument("--only-large", action="store_true", help="only the 32 MiB rows")
    args = ap.parse_args()
    if args.only_large:
        with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
            print_large(large_rows(tmp, args.large, docker_ok()))
        return 0

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
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        print_large(large_rows(tmp, args.large, docker_ok()))
    return 0


def print_large(rows: list[tuple[str, list[float] | None, str]]) -> None:
    """The large rows, with the ratio of each Docker row's p50 to the native one's."""
    native = {n.split(",")[0]: pct(x, 50) for n, x, _ in rows if x and n.endswith("native")}
    print(f"\n{'':26}{'p50':>12}{'p99':>12}   payload both ways, sandbox peak / vs native")
    for name, xs, note in rows:
        if xs is None:
            print(f"{name:26}{'':24}   {note}")
            continue
        p50, p99 = pct(xs, 50) * 1e3, pct(xs, 99) * 1e3
        ratio = ""
        if name.endswith("docker") and name.split(",")[0] in native:
            ratio = f", {p50 / 1e3 / native[name.split(',')[0]]:.1f}x native"
        print(f"{name:26}{p50:>9.1f} ms{p99:>9.1f} ms   {note}{ratio}")


if __name__ == "__main__":
    sys.exit(main())
