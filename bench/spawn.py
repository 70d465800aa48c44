"""Spawn latency: warden.run(["/bin/true"]) with full protection, side by side with
bubblewrap (namespaces and read-only binds, no cgroups, no seccomp) and a plain subprocess.

    python bench/spawn.py [--runs 500]

The peers are interleaved in one loop, so that load on the machine falls on all alike.
warden.run takes a sandbox made ahead (prepare.py) when one is ready; "made on the call" is
the same run with none ready, which is what a caller gets when runs come faster than
sandboxes are made. The back-to-back figures run each peer in a tight loop instead: there the
next sandbox is made while the caller waits, so they measure throughput, not latency.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

import warden
from warden.host import environ
from warden.providers.native import runner
from warden.spec.result import DEFAULT_OUTPUT_CAP


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def bwrap_argv() -> list[str]:
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
    for link, target in (("/bin", "usr/bin"), ("/sbin", "usr/sbin"), ("/lib", "usr/lib"),
                         ("/lib64", "usr/lib64")):
        argv += ["--symlink", target, link]
    if not sys.base_prefix.startswith("/usr"):
        argv += ["--ro-bind", sys.base_prefix, sys.base_prefix]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/workspace",
             "--chdir", "/workspace", "--clearenv", "/bin/true"]
    return argv


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    args = ap.parse_args()
    limits = warden.Limits()
    envl = environ.sandbox_env(None)

    def made_on_the_call():
        # warden.run's own steps with the sandbox made on the caller's path: none is taken
        # from the ready ones, and the preparer is not told, so it makes none in its place.
        ready = runner.make_sandbox(limits)
        runner.run_in(ready, ["/bin/true"], envl, stdin=None, limits=limits, cwd=None,
                      max_output_bytes=DEFAULT_OUTPUT_CAP)

    peers: dict[str, callable] = {
        "warden.run": lambda: warden.run(["/bin/true"]),
        "  made on the call": made_on_the_call,
        "subprocess.run": lambda: subprocess.run(["/bin/true"], check=True),
    }
    if shutil.which("bwrap"):
        argv = bwrap_argv()
        peers["bwrap"] = lambda: subprocess.run(argv, check=True)
    else:
        print("bwrap not installed: apt-get install bubblewrap", file=sys.stderr)
    for fn in peers.values():  # warm-up: caches, the seccomp program, page cache
        for _ in range(10):
            fn()
    times: dict[str, list[float]] = {k: [] for k in peers}
    for _ in range(args.runs):
        for name, fn in peers.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    print(f"{'':20}{'p50 ms':>10}{'p99 ms':>10}   ({args.runs} runs each, interleaved)")
    for name, xs in times.items():
        print(f"{name:20}{statistics.median(xs) * 1e3:10.2f}{pct(xs, 99) * 1e3:10.2f}")
    p50 = {k: statistics.median(v) for k, v in times.items()}
    if "bwrap" in times:
        print(f"warden.run p50 / bwrap p50 = {p50['warden.run'] / p50['bwrap']:.2f}  "
              f"(target <= 0.5); made on the call: "
              f"{p50['  made on the call'] / p50['bwrap']:.2f}")
    print(f"warden.run p50 / subprocess.run p50 = {p50['warden.run'] / p50['subprocess.run']:.2f}")

    n = max(50, args.runs // 4)
    print(f"\nback-to-back, {n} runs each:")
    tight = {}
    for name in ("warden.run", "bwrap"):
        if name not in peers:
            continue
        t = time.perf_counter()
        for _ in range(n):
            peers[name]()
        tight[name] = (time.perf_counter() - t) / n
        print(f"{name:20}{tight[name] * 1e3:10.2f} ms per run, {1 / tight[name]:8.0f} runs/s")
    if len(tight) == 2:
        print(f"warden.run / bwrap = {tight['warden.run'] / tight['bwrap']:.2f}")

    # How late the wall timeout bites: a process that double-forks and ignores SIGTERM, with a
    # 200 ms limit; the lateness is the run's duration past the limit.
    late = []
    hostile = ["/bin/sh", "-c", "trap '' TERM; (trap '' TERM; sleep 100 &); sleep 100"]
    for _ in range(max(10, args.runs // 20)):
        t = time.perf_counter()
        r = warden.run(hostile, limits=warden.Limits(wall_time_s=0.2))
        assert r.reason == "timeout", r
        late.append(time.perf_counter() - t - 0.2)
    print(f"timeout kill lateness: p50 {statistics.median(late) * 1e3:.2f} ms, "
          f"max {max(late) * 1e3:.2f} ms (the limit is 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
