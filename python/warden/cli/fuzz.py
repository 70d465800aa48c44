"""``warden fuzz TARGET.py``: an atheris (libFuzzer) target fuzzed with every input in a
fresh copy-on-write child of a warden sandbox (a fork server), failures kept per bucket.

Each of ``--jobs`` jobs is a process of its own (warden.testing.fuzzdriver): libFuzzer's
mutation loop there, the target in its fork server, coverage carried back per input. Jobs
share the corpus directory (libFuzzer reloads it) and the crashes directory
(warden.testing.crashes). At the end: a table of the buckets this run hit.

Exit status: 0 when no input failed; 1 when at least one input failed (an exception, a
crash, a timeout or the memory limit: each is in the table and in --crashes); 2 when the
command line is wrong; 125 when warden or the target's loading failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from warden.cli import flags

__all__ = ["EXIT_FOUND", "add_parser", "fuzz"]

EXIT_FOUND, EXIT_USAGE, EXIT_WARDEN = 1, 2, 125
# Per input (the fork server's per_input); the other limits bound each job's sandbox.
_PER_INPUT = ("memory_mb", "wall_time_s", "cpu_time_s")
_SERVER_OVERHEAD_MB = 256
_GRACE_S = 30.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 7 * 86400:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and a week of seconds")
    return value


def _count(lo: int, hi: int):
    def count(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is not from {lo} to {hi}")
        return value

    return count


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "fuzz", help="fuzz an atheris target, each input in a fresh sandboxed fork",
        description="Fuzz TARGET.py (an atheris target: it defines TestOneInput(data)) with "
        "libFuzzer, running every input in a fresh copy-on-write child of a warden sandbox "
        "set up with the target once. Failing inputs are kept in --crashes, one per bucket, "
        "with their verdict as JSON beside them. --memory, --timeout and --cpu-time bound "
        "each input; the other limits bound each job's sandbox.",
        epilog="exit status: 0 when no input failed; 1 when inputs failed (see the table and "
        "--crashes); 2 for a wrong command line; 125 when warden or loading the target failed")
    p.add_argument("target", metavar="TARGET.py", help="the atheris target")
    p.add_argument("--corpus", metavar="DIR", help="corpus to resume from; new inputs are "
                   "added to it (default: a temporary directory)")
    p.add_argument("--crashes", metavar="DIR", default="crashes",
                   help="where failing inputs and their verdicts go (default ./crashes)")
    p.add_argument("--jobs", type=_count(1, 64), default=1, metavar="N",
                   help="fuzzing jobs, each with its own sandbox (default 1)")
    p.add_argument("--time", type=_seconds, default=60.0, metavar="S",
                   help="how long to fuzz, in seconds (default 60)")
    p.add_argument("--max-len", type=_count(1, 1 << 20), default=4096, metavar="N",
                   help="longest input libFuzzer makes, in bytes (default 4096)")
    p.add_argument("--seed", type=_count(0, (1 << 31) - 1), metavar="N",
                   help="libFuzzer's random seed (job i uses N+i)")
    for flag, field, kind, metavar, text in flags.LIMIT_FLAGS:
        p.add_argument(flag, dest=field, type=kind, metavar=metavar, help=text)
    p.set_defaults(func=fuzz)
    return p


def _limits(args: argparse.Namespace) -> tuple[dict, dict | None]:
    """(per-input, whole sandbox) Limits fields; the sandbox None when no flag names it."""
    from warden.spec.limits import Limits

    given = {f: getattr(args, f) for _, f, *_ in flags.LIMIT_FLAGS
             if getattr(args, f) is not None}
    per = {f: v for f, v in given.items() if f in _PER_INPUT}
    whole = {f: v for f, v in given.items() if f not in _PER_INPUT}
    per_limits = Limits(**per)
    per = {f: getattr(per_limits, f) for f in _PER_INPUT}
    if not whole:
        return per, None
    whole.setdefault("memory_mb", per_limits.memory_mb + _SERVER_OVERHEAD_MB)
    whole.setdefault("wall_time_s", max(60.0, per_limits.wall_time_s * 32 + 60.0))
    return per, whole


def _start_jobs(args: argparse.Namespace, work: str, corpus: str) -> list[tuple]:
    per, whole = _limits(args)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    jobs = []
    for i in range(args.jobs):
        cfg = {"target": os.path.abspath(args.target), "corpus": corpus,
               "crashes": os.path.abspath(args.crashes), "time_s": args.time,
               "max_len": args.max_len, "per_input": per, "limits": whole,
               "log": os.path.join(work, f"failed-{i}.jsonl"),
               "workdir": os.path.join(work, f"job-{i}"),
               "seed": None if args.seed is None else args.seed + i}
        os.mkdir(cfg["workdir"])
        path = os.path.join(work, f"job-{i}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        out = open(os.path.join(work, f"job-{i}.log"), "wb")  # closed by _wait
        proc = subprocess.Popen([sys.executable, "-m", "warden.testing.fuzzdriver", path],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cfg["workdir"])
        jobs.append((proc, out, cfg))
    return jobs


def _wait(jobs: list[tuple], limit_s: float) -> list[int]:
    """The jobs' exit statuses. Past ``limit_s``, or on Ctrl-C, each job is told to end
    (SIGTERM: it closes its sandbox at its next input), then killed after a grace."""
    deadline = time.monotonic() + limit_s
    try:
        for proc, _out, _cfg in jobs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
    except KeyboardInterrupt:
        print("warden fuzz: interrupted; ending the jobs", file=sys.stderr)
    codes = []
    for proc, out, _cfg in jobs:
        if proc.poll() is None:
            proc.terminate()
        try:
            codes.append(proc.wait(timeout=_GRACE_S))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
        out.close()
    return codes


def _tail(path: str, lines: int = 15) -> str:
    with open(path, "rb") as f:
        text = f.read()[-8192:].decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _runs(workdir: str) -> int:
    try:
        with open(os.path.join(workdir, "runs"), encoding="utf-8") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _table(buckets: list) -> str:
    rows = [("bucket", "outcome", "signal/exception", "count", "first input")]
    rows += [(b.bucket, b.outcome, b.what, str(b.count), b.file) for b in buckets]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i == 3 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def fuzz(args: argparse.Namespace) -> int:
    from warden.testing.crashes import summarize

    if not os.path.isfile(args.target):
        print(f"warden fuzz: {args.target}: no such file", file=sys.stderr)
        return EXIT_USAGE
    os.makedirs(args.crashes, exist_ok=True)
    work = tempfile.mkdtemp(prefix="warden-fuzz-")
    try:
        corpus = os.path.abspath(args.corpus or os.path.join(work, "corpus"))
        os.makedirs(corpus, exist_ok=True)
        started = time.monotonic()
        jobs = _start_jobs(args, work, corpus)
        codes = _wait(jobs, args.time + _GRACE_S)
        took = time.monotonic() - started
        failed_jobs = [(i, c) for i, c in enumerate(codes) if c != 0]
        for i, code in failed_jobs:
            print(f"warden fuzz: job {i} ended with status {code}:\n"
                  f"{_tail(os.path.join(work, f'job-{i}.log'))}", file=sys.stderr)
        buckets = summarize(cfg["log"] for _p, _o, cfg in jobs)
        runs = sum(_runs(cfg["workdir"]) for _p, _o, cfg in jobs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failed_jobs and len(failed_jobs) == len(jobs) and not buckets:
        return EXIT_WARDEN
    print(f"{runs} inputs in {took:.0f} s ({runs / took:.0f}/s), each in a fresh fork")
    if buckets:
        print(_table(buckets))
        print(f"{sum(b.count for b in buckets)} failing inputs in {len(buckets)} buckets; "
              f"inputs and verdicts in {args.crashes}")
    else:
        print("no failing input")
    return EXIT_FOUND if buckets else 0
