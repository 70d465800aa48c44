#!/usr/bin/env python3
"""Scanner benchmark: warden's C++ scanner against its ast reference, ruff and bandit, side by
side on the same corpus in one run (default: every .py file of this interpreter's standard
library, site-packages excluded).

    python bench/scan.py [--skip-bandit] [--repeat N] [PATH...]

Prints wall-clock MB/s and MB/s per CPU (bytes over CPU seconds, children included, so that a
multi-threaded peer is not flattered), and each peer's ratio to warden on one thread. ruff runs
with ``--select S102,S307`` (exec, eval) and bandit with ``-t B102,B307``, the closest match to
warden's builtin rule; both refuse some files (ruff the non-UTF-8 ones) and still count their
bytes here.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import sysconfig
import time

import warden
from warden.scan.reference import reference_scan


def corpus(paths: list[str]) -> list[str]:
    roots = paths or [sysconfig.get_paths()["stdlib"]]
    out = []
    for root in roots:
        if os.path.isfile(root):
            out.append(root)
            continue
        for d, dirs, files in os.walk(root):
            dirs[:] = sorted(x for x in dirs if x != "site-packages")
            out.extend(os.path.join(d, f) for f in sorted(files) if f.endswith(".py"))
    return out


def cpu_now() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def measure(fn, repeat: int) -> tuple[float, float]:
    """Best wall and best CPU seconds over `repeat` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), cpu_now()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(cpu_now() - c0)
    return min(walls), min(cpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="files or directories (default: the stdlib)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the fast scanners (best kept)")
    ap.add_argument("--skip-bandit", action="store_true", help="bandit takes about a minute")
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()

    files = corpus(args.paths)
    datas = []
    for p in files:
        with open(p, "rb") as fh:
            datas.append(fh.read())
    mb = sum(map(len, datas)) / 1e6
    ncpu = os.cpu_count() or 1
    print(f"corpus: {len(files)} files, {mb:.1f} MB; Python {platform.python_version()}, "
          f"{ncpu} CPUs, {platform.machine()}")

    rows = []

    def add(name, wall, cpu, note=""):
        rows.append((name, wall, cpu, note))

    def one_thread():
        for d in datas:
            warden.scan(d)

    nfind = sum(len(warden.scan(d)) for d in datas)
    add("warden scan() 1 thread", *measure(one_thread, args.repeat), f"{nfind} findings")
    add("warden scan_paths() 1 thread", *measure(lambda: warden.scan_paths(files, threads=1), args.repeat),
        "reads files too")
    add(f"warden scan_paths() {ncpu} threads",
        *measure(lambda: warden.scan_paths(files), args.repeat), "reads files too")

    if not args.skip_reference:
        add("ast reference (parse + walk)", *measure(lambda: [reference_scan(d) for d in datas], 1))

    ruff = shutil.which("ruff")
    if ruff:
        cmd = [ruff, "check", "--isolated", "--no-cache", "--exit-zero", "--quiet",
               "--select", "S102,S307", *files]
        add("ruff --select S102,S307", *measure(
            lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False), args.repeat),
            "all threads; skips non-UTF-8 files")
    else:
        print("ruff not found: pip install ruff")
    bandit = shutil.which("bandit")
    if bandit and not args.skip_bandit:
        cmd = [bandit, "-q", "-f", "json", "-o", os.devnull, "-t", "B102,B307", *files]
        add("bandit -t B102,B307", *measure(
            lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False), 1))
    elif not bandit:
        print("bandit not found: pip install bandit")

    base = mb / rows[0][2]
    print(f"\n{'scanner':36} {'wall s':>8} {'CPU s':>8} {'MB/s':>9} {'MB/s/CPU':>9} {'warden/peer':>12}")
    for name, wall, cpu, note in rows:
        per_cpu = mb / cpu if cpu > 0 else float("inf")
        print(f"{name:36} {wall:8.3f} {cpu:8.3f} {mb / wall:9.1f} {per_cpu:9.1f} "
              f"{base / per_cpu:11.1f}x  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
