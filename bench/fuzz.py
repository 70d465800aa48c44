"""Isolated inputs per second for a trivial target, peers side by side in one run:

* fork server, one sandbox (``ForkServer.map(jobs=1)``) and one per CPU (``jobs=None``);
* ``warden.run`` per input (a fresh sandbox running ``python -c`` for each input);
* ``subprocess`` per input (``python -c``, no sandbox);
* in-process, no isolation at all: the ceiling;
* hypothesis examples per second through ``@warden.testing.isolated`` vs plain hypothesis.

    PYTHONPATH=python python bench/fuzz.py [--seconds 5]

Each peer runs for about ``--seconds``; the machine's load falls on all of them alike only
roughly, so run it twice and read the ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable

import warden

SETUP = "def target(x):\n    return x + 1\n"


def rate(fn: Callable[[int], int], seconds: float) -> float:
    """Inputs per second of ``fn(n) -> inputs done``, called with growing n until time is up."""
    done, n, t0 = 0, 16, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done += fn(n)
        n = min(n * 2, 4096)
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    s = args.seconds
    load0 = f"{os.getloadavg()[0]:.2f}"
    cpus = len(os.sched_getaffinity(0))
    results: dict[str, float] = {}
    exec(SETUP, ns := {})  # nosec B102 - the same trivial target, in this process
    results["in-process (no isolation)"] = rate(lambda n: len([ns["target"](i) for i in range(n)]), s)
    with warden.ForkServer(SETUP, per_input=warden.Limits(wall_time_s=5)) as fs:
        list(fs.map(range(64), jobs=cpus))  # every server started
        results["fork server, 1 sandbox"] = rate(lambda n: len(list(fs.map(range(n), jobs=1))), s)
        results[f"fork server, {cpus} sandboxes"] = rate(
            lambda n: len(list(fs.map(range(n), jobs=cpus))), s)
        results["fork server, run() one at a time"] = rate(
            lambda n: len([fs.run(i) for i in range(min(n, 256))]), s)
    code = "import sys; print(int(sys.argv[1]) + 1)"
    results["subprocess per input"] = rate(lambda n: len([subprocess.run(
        [sys.executable, "-S", "-c", code, str(i)], capture_output=True)
        for i in range(min(n, 64))]), s)
    results["warden.run per input"] = rate(lambda n: len([warden.run(
        [sys.executable, "-S", "-c", code, str(i)]) for i in range(min(n, 16))]), s)
    results.update(hypothesis_rates(s))
    width = max(len(k) for k in results)
    base = results["warden.run per input"]
    print(f"load average {load0} at the start, {os.getloadavg()[0]:.2f} at the end; "
          f"{cpus} CPUs")
    for name, r in results.items():
        print(f"{name:<{width}}  {r:>10.1f}/s  {r / base:>8.1f}x warden.run")


def hypothesis_rates(seconds: float) -> dict[str, float]:
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from warden.testing.decorator import isolated

    out = {}
    n = 300

    @settings(max_examples=n, database=None, deadline=None)
    @given(st.integers())
    def plain(x: int) -> None:
        assert x + 1 != x

    t0 = time.perf_counter()
    plain()
    out["hypothesis in-process"] = n / (time.perf_counter() - t0)
    body = _isolated_body(isolated)
    body.warden_runner.start()
    try:
        t0 = time.perf_counter()
        settings(max_examples=n, database=None, deadline=None)(given(st.integers())(body))()
        out["hypothesis @isolated"] = n / (time.perf_counter() - t0)
    finally:
        body.warden_runner.close()
    return out


def _isolated_body(isolated):  # a module-level function, as @isolated needs
    return isolated(limits=warden.Limits(wall_time_s=5))(check_example)


def check_example(x: int) -> None:
    assert x + 1 != x


if __name__ == "__main__":
    main()
