"""Providers side by side: the first call on a new sandbox (create + one request + destroy) and
warm calls on a live one (a worker request; a command through exec), p50/p99, in one run.

    PYTHONPATH=python python3 bench/providers.py [warm calls] [fresh sandboxes]

A provider this host cannot run (no root for native, no DOCKER_HOST for docker) is reported as
skipped with the reason. Start a private engine first with `eval "$(scripts/dockerd-start)"`.
"""

from __future__ import annotations

import sys
import time

from warden.errors import WardenError
from warden.providers import get_provider
from warden.providers.base import SandboxSpec


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def measure(name: str, warm_n: int, fresh_n: int) -> dict[str, list[float]]:
    p = get_provider(name)
    spec = SandboxSpec()
    # Warm-up: the native zygote starts, the Docker image is built when missing.
    h = p.create(spec)
    p.call(h, "ping", {})
    out: dict[str, list[float]] = {"first call": [], "warm call": [], "warm exec": []}
    for _ in range(fresh_n):
        t0 = time.perf_counter()
        f = p.create(spec)
        p.call(f, "ping", {})
        out["first call"].append(time.perf_counter() - t0)
        p.destroy(f)
    for _ in range(warm_n):
        t0 = time.perf_counter()
        p.call(h, "ping", {})
        out["warm call"].append(time.perf_counter() - t0)
    for _ in range(max(10, warm_n // 20)):
        t0 = time.perf_counter()
        p.exec(h, ["true"])
        out["warm exec"].append(time.perf_counter() - t0)
    p.destroy(h)
    return out


def fmt(s: float) -> str:
    return f"{s * 1e3:9.2f} ms" if s >= 1e-3 else f"{s * 1e6:9.1f} µs"


def main() -> None:
    warm_n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    fresh_n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    results: dict[str, dict[str, list[float]]] = {}
    for name in ("native", "docker"):
        try:
            results[name] = measure(name, warm_n, fresh_n)
        except (WardenError, OSError) as exc:
            print(f"{name}: skipped ({exc})")
    if not results:
        return
    names = list(results)
    print(f"{'':12}" + "".join(f"{n + ' p50':>14}{n + ' p99':>14}" for n in names)
          + ("      docker/native p50" if len(names) == 2 else ""))
    for row in ("first call", "warm call", "warm exec"):
        line = f"{row:12}"
        for n in names:
            line += f"{fmt(pct(results[n][row], 0.5)):>14}{fmt(pct(results[n][row], 0.99)):>14}"
        if len(names) == 2:
            ratio = pct(results["docker"][row], 0.5) / pct(results["native"][row], 0.5)
            line += f"{ratio:16.1f}x"
        print(line)


if __name__ == "__main__":
    main()
