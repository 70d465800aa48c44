"""Cost of one sandbox cgroup on this host: create (mkdir + limits) and destroy (kill check +
rmdir), µs per call, p50 and p99, with the driver warden detects. Also the cost of one limit
write through cgroupspy's Controller next to a direct os.open/os.write, which is why the hot
path writes most files directly.

    PYTHONPATH=python python3 bench/cgroups.py [N]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from cgroupspy.controllers import MemoryController
from cgroupspy.nodes import Node
from warden.host import cgroups


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    d = cgroups.driver()
    create, destroy = [], []
    for _ in range(50):  # warm-up: parents, dentry caches
        d.create(256 << 20, 64, 1.0).destroy()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        c = d.create(256 << 20, 64, 1.0)
        t1 = time.perf_counter_ns()
        c.destroy()
        t2 = time.perf_counter_ns()
        create.append((t1 - t0) / 1e3)
        destroy.append((t2 - t1) / 1e3)
    total = [a + b for a, b in zip(create, destroy)]
    print(f"cgroup v{d.version} driver, {n} cycles, limits memory+pids+cpu")
    for name, xs in (("create", create), ("destroy", destroy), ("create+destroy", total)):
        print(f"  {name:15s} p50 {statistics.median(xs):8.1f} µs   p99 {pct(xs, 0.99):8.1f} µs")

    c = d.create(256 << 20, 64, 1.0)
    mem_dir = c.path
    path = os.path.join(mem_dir, "memory.soft_limit_in_bytes" if d.version == 1 else "memory.high")
    ctl = MemoryController(Node(mem_dir)) if d.version == 1 else None
    m = 2000
    t0 = time.perf_counter_ns()
    for _ in range(m):
        fd = os.open(path, os.O_WRONLY)
        os.write(fd, b"134217728")
        os.close(fd)
    direct = (time.perf_counter_ns() - t0) / m / 1e3
    line = f"  one limit write: os.open/os.write {direct:.1f} µs"
    if ctl is not None:
        t0 = time.perf_counter_ns()
        for _ in range(m):
            ctl.soft_limit_in_bytes = 134217728
        via = (time.perf_counter_ns() - t0) / m / 1e3
        line += f", cgroupspy Controller {via:.1f} µs (ratio {via / direct:.2f})"
    print(line)
    c.destroy()


if __name__ == "__main__":
    main()
