"""Spawn latency: warden.run(["/bin/true"]) with full protection, side by side with
bubblewrap (namespaces and read-only binds, no cgroups, no seccomp) and a plain subprocess.

    python bench/spawn.py [--runs 500]

The three are interleaved in one loop, so that load on the machine falls on all alike.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

import warden


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
    peers: dict[str, callable] = {
        "warden.run": lambda: warden.run(["/bin/true"]),
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
    print(f"{'':16}{'p50 ms':>10}{'p99 ms':>10}   ({args.runs} runs each, interleaved)")
    for name, xs in times.items():
        print(f"{name:16}{statistics.median(xs) * 1e3:10.2f}{pct(xs, 99) * 1e3:10.2f}")
    if "bwrap" in times:
        ratio = statistics.median(times["warden.run"]) / statistics.median(times["bwrap"])
        print(f"warden.run p50 / bwrap p50 = {ratio:.2f}  (target <= 0.5)")
    ratio = statistics.median(times["warden.run"]) / statistics.median(times["subprocess.run"])
    print(f"warden.run p50 / subprocess.run p50 = {ratio:.2f}")

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
