"""``warden demo``: the transformation engine end to end, then every protection biting.

It loads the transform plugin shipped in ``warden/examples``, pushes records through it in
batches (a progress bar on stderr), sends one payload too large for a frame (as a memfd) and
gets the result back as a file from the plugin's data/, times warm calls, and then loads the
hostile plugins one after another: each attack is refused with its named error, and after
each the engine serves the next call. It ends with a table of throughput and latency.

The exit status is 0 only if every protection held and every call after one succeeded.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TextIO

from warden.errors import (
    DiskQuotaExceeded,
    MemoryLimitExceeded,
    PidsLimitExceeded,
    PluginError,
    ScanRejected,
    TimeoutExceeded,
    WardenError,
)

__all__ = ["EXAMPLES", "add_parser", "expected", "main", "make_batch"]

# Inside the package, so that the demo works from a source checkout and from an installed
# wheel alike (the repository's examples/ points here).
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

_NAMES = ("ada  LOVELACE", " grace hopper ", "ALAN   turing", "barbara liskov", "edsger dijkstra")


def make_batch(start: int, n: int) -> list[dict]:
    """``n`` raw records with ids from ``start``."""
    return [{"id": i, "name": _NAMES[i % 5], "email": f" User{i}@Example.ORG ",
             "amount": f"{i % 1000}.{i % 100:02d}"} for i in range(start, start + n)]


def expected(record: dict) -> dict:
    """What the plugin must make of ``record`` (computed here, on the host, to check it)."""
    whole, _, frac = record["amount"].strip().partition(".")
    return {"id": record["id"], "name": " ".join(record["name"].split()).title(),
            "email": record["email"].strip().lower(),
            "cents": int(whole) * 100 + int((frac + "00")[:2])}


class _Progress:
    """A one-line progress bar in plain text, redrawn with \\r (no terminal control codes)."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total = total
        self.stream = stream
        self.width = width
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        filled = self.width * done // max(1, self.total)
        rate = done / max(now - self.start, 1e-9)
        self.stream.write(f"\r  [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{done:>11,}/{self.total:,} records  {rate:>10,.0f} records/s")
        self.stream.flush()

    def finish(self) -> None:
        self.update(self.total, force=True)
        self.stream.write("\n")
        self.stream.flush()


@dataclass
class _Outcome:
    label: str
    held: bool
    shown: str          # the named error (or result) the attack met
    where: str          # scanner or kernel, and how
    served_after: bool


def _short(exc: BaseException, limit: int = 110) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, PluginError):
        text = f"PluginError({exc.type}): {exc.message}"
    elif isinstance(exc, ScanRejected) and exc.findings:
        f = exc.findings[0]
        text = (f"ScanRejected: {os.path.basename(getattr(f, 'filename', ''))}:{f.line} "
                f"{f.rule}: {f.message}")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def _attack(engine, name: str, action: str, payload: object,
            judge: Callable[[object, BaseException | None], tuple[bool, str, str]]):
    """Load hostile plugin ``name``, run ``action`` once, judge what happened, and check
    that the same plugin (on a fresh worker if the old one was killed) answers again."""
    plugin = engine.load(os.path.join(EXAMPLES, "hostile", name), labels={"purpose": "demo"})
    try:
        result, error = None, None
        try:
            result = plugin.call(action, payload)
        except WardenError as exc:
            error = exc
        held, shown, where = judge(result, error)
        served = plugin.call("ping") == "pong"
    finally:
        plugin.close()
    return held, shown, where, served


def _expect(cls: type, where: str):
    def judge(result, error):
        if isinstance(error, cls) and isinstance(error, BaseException):
            return True, _short(error), where
        shown = _short(error) if error else f"returned {result!r:.80}"
        return False, shown, "nothing: the attack was not stopped"
    return judge


class _Attacks:
    """The hostile plugins one after another, each recorded with whether it was refused and
    whether the engine's own plugin answered after it."""

    def __init__(self, engine, transform, out: TextIO) -> None:
        self.engine, self.transform, self.out = engine, transform, out
        self.outcomes: list[_Outcome] = []

    def record(self, label: str, fn: Callable[[], tuple[bool, str, str, bool]]) -> None:
        try:
            held, shown, where, served = fn()
        except WardenError as exc:
            held, shown, where, served = False, _short(exc), "unexpected error", False
        # The engine's own plugin answers after every attack: nothing leaked into it.
        served = served and self.transform.call("ping") == "pong"
        self.outcomes.append(_Outcome(label, held, shown, where, served))
        mark = "refused" if held else "NOT REFUSED"
        self.out.write(f"  {label:<22} {mark:<11} {shown}\n")
        self.out.write(f"  {'':<22} {'':<11} by the {where}; next call: "
                       f"{'ok' if served else 'FAILED'}\n")
        self.out.flush()

    def limits(self) -> None:
        for label, plugin, fn, cls, where in (
                ("memory bomb", "memory_bomb", "bomb", MemoryLimitExceeded,
                 "kernel: memory cgroup OOM kill, confirmed from the cgroup"),
                ("disk filler", "disk_filler", "fill", DiskQuotaExceeded,
                 "kernel: ENOSPC at the data/ quota (max_disk_mb)"),
                ("infinite loop", "infinite_loop", "spin", TimeoutExceeded,
                 "engine: deadline passed, sandbox killed and replaced"),
                ("fork bomb", "fork_bomb", "bomb", PidsLimitExceeded,
                 "kernel: pids cgroup refused the fork, confirmed from the cgroup")):
            self.record(label, partial(_attack, self.engine, plugin, fn, None,
                                       _expect(cls, where)))

    def host_file(self) -> None:
        with tempfile.TemporaryDirectory(prefix="warden-demo-") as tmp:
            secret = os.path.join(tmp, "host-secret.txt")
            with open(secret, "w") as f:
                f.write("the host's secret\n")

            def judge(result, error):
                if isinstance(error, PluginError) and error.type in ("FileNotFoundError",
                                                                     "PermissionError"):
                    return (True, _short(error),
                            "kernel: the host's file system is not mounted in the sandbox")
                return False, _short(error) if error else f"READ {result!r:.60}", "nothing"

            self.record("read a host file",
                        lambda: _attack(self.engine, "host_file", "read", secret, judge))

    def scanned(self) -> None:
        def load() -> tuple[bool, str, str, bool]:
            try:
                self.engine.load(os.path.join(EXAMPLES, "hostile", "socket_scanned"))
            except ScanRejected as exc:
                return True, _short(exc), "scanner, at load (import socket not allowed)", True
            return False, "loaded", "nothing", True

        self.record("socket (no allowance)", load)

    def host_port(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.setblocking(False)
            port = listener.getsockname()[1]

            def judge(result, error):
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    reached = False
                else:
                    conn.close()
                    reached = True
                if not reached and isinstance(error, PluginError):
                    where = (f"kernel: own network namespace, host port {port} unreachable "
                             "(only the sandbox's loopback exists)")
                    return True, _short(error), where
                return False, _short(error) if error else f"returned {result!r:.60}", "nothing"

            self.record("socket to a host port",
                        lambda: _attack(self.engine, "socket_kernel", "connect", port, judge))
        finally:
            listener.close()


def _protections(engine, transform, out: TextIO) -> list[_Outcome]:
    attacks = _Attacks(engine, transform, out)
    attacks.limits()
    attacks.host_file()
    attacks.scanned()
    attacks.host_port()
    return attacks.outcomes


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="the transformation engine, end to end",
                              description="Push records through the transform plugin, then "
                              "let every hostile plugin try its attack. Exit 0 only if every "
                              "protection held.")
    p.add_argument("--records", type=int, default=1_000_000, help="records to push")
    p.add_argument("--batch", type=int, default=10_000, help="records per call")
    p.set_defaults(func=_cmd)
    return p


def _cmd(args: argparse.Namespace) -> int:
    return main(records=args.records, batch=args.batch)


def main(records: int = 1_000_000, batch: int = 10_000, *, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    from warden.plugins.engine import Engine

    out = out or sys.stdout
    err = err or sys.stderr
    if records < 1 or batch < 1:
        err.write("warden demo: --records and --batch must be at least 1\n")
        return 2
    t_start = time.perf_counter()
    try:
        engine = Engine()
    except WardenError as exc:
        err.write(f"warden demo: {exc}\n")
        return 1
    with engine:
        try:
            return _run(engine, records, batch, out, err, t_start)
        except WardenError as exc:
            err.write(f"\nwarden demo: {exc}\n")
            return 1


def _push(transform, records: int, batch: int, out: TextIO, err: TextIO) -> float | None:
    """Seconds to push ``records`` through in batches; None when a result is wrong."""
    out.write(f"pushing {records:,} records in batches of {batch:,}\n")
    out.flush()
    bar = _Progress(records, err)
    done = 0
    t0 = time.perf_counter()
    while done < records:
        n = min(batch, records - done)
        items = make_batch(done, n)
        result = transform.call_batch("normalize", items)
        if len(result) != n or result[0] != expected(items[0]) or result[-1] != expected(items[-1]):
            err.write("\n")
            out.write(f"  WRONG RESULT for records {done}..{done + n - 1}\n")
            return None
        done += n
        bar.update(done)
    bar.finish()
    return time.perf_counter() - t0


def _large(transform, out: TextIO) -> tuple[float, float, bool]:
    """(MiB sent, seconds, right) for one payload over the frame cap."""
    note = b"lorem ipsum " * 80
    n_large = 20_000
    lines = b"".join(b'{"id":%d,"name":"ada  LOVELACE","email":"A@B.ORG","amount":"%d.50",'
                     b'"note":" %s "}\n' % (i, i % 1000, note) for i in range(n_large))
    t0 = time.perf_counter()
    exported = transform.call("export", lines)
    large_s = time.perf_counter() - t0
    n_out = exported.count(b"\n") if isinstance(exported, (bytes, bytearray)) else -1
    large_ok = n_out == n_large
    out.write(f"large payload: {len(lines) / 2**20:.1f} MiB in (memfd, over the frame cap) -> "
              f"{len(exported) / 2**20 if n_out >= 0 else 0:.1f} MiB out (data/export.jsonl) "
              f"{'ok' if large_ok else 'WRONG'}\n")
    return len(lines) / 2**20, large_s, large_ok


def _latencies(transform) -> list[float]:
    lat = []
    for _ in range(200):
        transform.call("ping")
    for _ in range(2000):
        t0 = time.perf_counter()
        transform.call("ping")
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return lat


def _run(engine, records: int, batch: int, out: TextIO, err: TextIO, t_start: float) -> int:
    out.write(f"warden demo: the transformation engine ({EXAMPLES}/transform)\n")
    transform = engine.load(os.path.join(EXAMPLES, "transform"), tenant="demo")
    out.write(f"  loaded {transform.name} {transform.version}: scanned, "
              f"{transform.manifest.pool.min_workers} warm worker(s) in their own sandboxes\n")
    out.flush()

    # 1. Throughput: records in batches, each checked against the host's own transformation.
    push_s = _push(transform, records, batch, out, err)
    if push_s is None:
        return 1
    # 2. A payload over the frame cap goes as a sealed memfd; the result comes back as a file.
    large_mib, large_s, large_ok = _large(transform, out)
    # 3. Warm call latency, one call at a time.
    lat = _latencies(transform)

    # 4. The protections.
    out.write("protections (each attack is a plugin of warden/examples/hostile):\n")
    out.flush()
    outcomes = _protections(engine, transform, out)

    total_s = time.perf_counter() - t_start
    rows = [
        ("records pushed", f"{records:,} in batches of {batch:,}"),
        ("throughput", f"{records / push_s:,.0f} records/s"),
        ("warm call p50", f"{_percentile(lat, 0.50) * 1e6:,.0f} µs"),
        ("warm call p99", f"{_percentile(lat, 0.99) * 1e6:,.0f} µs"),
        ("large payload", f"{large_mib:.1f} MiB round trip in {large_s:.2f} s"),
        ("protections held", f"{sum(o.held for o in outcomes)}/{len(outcomes)}"),
        ("served after each", f"{sum(o.served_after for o in outcomes)}/{len(outcomes)}"),
        ("demo wall time", f"{total_s:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 40)
    out.write("\n".join(["", rule, *(f"{k:<{width}}  {v}" for k, v in rows), rule, ""]))
    out.flush()
    good = large_ok and all(o.held and o.served_after for o in outcomes)
    return 0 if good else 1
