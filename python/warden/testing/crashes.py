"""Where ``warden fuzz`` keeps what failed: one input per bucket in the crashes directory,
with its verdict beside it, and a log line per failing input of the run.

Layout of the crashes directory::

    crash-<bucket>        the first input seen failing that way (raw bytes)
    crash-<bucket>.json   its verdict (see ``verdict_json``)

A bucket is claimed by creating its ``.json`` with O_EXCL, so several fuzzing jobs, and runs
that resume with the same directory, keep exactly one input per bucket. Every failing input,
kept or not, is a line of the run's log (``bucket``, ``outcome``, ``what``, ``file``), from
which the table at the end is made.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal as _signal
from collections.abc import Iterable
from dataclasses import dataclass

from warden.testing.verdict import Verdict

__all__ = ["Bucket", "CrashStore", "summarize", "verdict_json", "what_of"]

_STDERR_KEEP = 16 << 10


def what_of(v: Verdict) -> str:
    """The signal's name or the exception's type (what the table shows)."""
    if v.signal is not None:
        try:
            return _signal.Signals(v.signal).name
        except ValueError:
            return f"signal {v.signal}"
    if v.exception is not None:
        return v.exception.type
    if v.exit_code is not None:
        return f"exit {v.exit_code}"
    return ""


def verdict_json(v: Verdict, data: bytes, file: str) -> dict:
    exc = v.exception
    return {
        "bucket": v.bucket, "outcome": v.outcome, "what": what_of(v), "signal": v.signal,
        "exit_code": v.exit_code,
        "exception": None if exc is None else {"type": exc.type, "message": exc.message,
                                               "traceback": exc.traceback},
        "duration_s": v.duration_s, "peak_memory_bytes": v.peak_memory_bytes,
        "stderr": v.stderr[-_STDERR_KEEP:].decode("utf-8", "backslashreplace"),
        "input": file, "input_size": len(data), "input_sha1": hashlib.sha1(data).hexdigest(),
        "describe": v.describe(),
    }


class CrashStore:
    """Keeps failing inputs of one fuzzing job: the first per bucket as files, every one as a
    line of ``log``."""

    def __init__(self, directory: str, log: str) -> None:
        self.directory = directory
        self.log = log
        self._known: set[str] = set()

    def record(self, data: bytes, v: Verdict) -> None:
        bucket = str(v.bucket)
        name = f"crash-{bucket}"
        if bucket not in self._known:
            self._known.add(bucket)
            self._claim(name, data, v)
        line = {"bucket": bucket, "outcome": v.outcome, "what": what_of(v), "file": name}
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def _claim(self, name: str, data: bytes, v: Verdict) -> None:
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path + ".json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return  # kept already, by another job or an earlier run
        with open(fd, "w", encoding="utf-8") as f:
            with open(path + ".tmp", "wb") as raw:
                raw.write(data)
            os.replace(path + ".tmp", path)
            json.dump(verdict_json(v, data, name), f, indent=2)
            f.write("\n")


@dataclass
class Bucket:
    bucket: str
    outcome: str
    what: str
    count: int
    file: str


def summarize(logs: Iterable[str]) -> list[Bucket]:
    """The run's buckets from its jobs' logs, most frequent first."""
    found: dict[str, Bucket] = {}
    for log in logs:
        try:
            with open(log, encoding="utf-8") as f:
                lines = f.readlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a job killed while it wrote its last line
            b = found.get(rec["bucket"])
            if b is None:
                found[rec["bucket"]] = Bucket(rec["bucket"], rec["outcome"], rec["what"], 1,
                                              rec["file"])
            else:
                b.count += 1
    return sorted(found.values(), key=lambda b: (-b.count, b.bucket))
