"""What `warden fuzz` does on the host with what comes out of a sandbox: coverage is replayed
only within the counters setup reserved and only for bounded operands, and failing inputs are
kept once per bucket however many jobs and runs hit them. A job that ends (libFuzzer never
returns to it) leaves no sandbox behind."""

from __future__ import annotations

import array
import json
import os
import subprocess
import sys

import pytest
from warden.testing.crashes import CrashStore, summarize
from warden.testing.fuzzdriver import Replay
from warden.testing.verdict import ExceptionInfo, Verdict

from tests.plugins.test_plugins import native_ok


class FakeAtheris:
    def __init__(self) -> None:
        self.next, self.branches, self.cmps = 100, [], []

    def _reserve_counter(self) -> int:
        self.next += 1
        return self.next - 1

    def _trace_branch(self, idx: int) -> None:
        self.branches.append(idx)

    def _trace_cmp(self, left, right, op, idx, const) -> bool:
        self.cmps.append((left, right, op, idx, const))
        return left == right


def coverage(ids, hits, cmps):
    return [array.array("I", ids).tobytes(), bytes(hits), cmps]


def test_replay_maps_counters_and_keeps_to_what_setup_reserved():
    a = FakeAtheris()
    replay = Replay(a, 3)  # the sandbox's counters 0..2 are this process's 100..102
    replay(coverage([0, 2, 3, 1 << 31], [2, 1, 1, 1],
                    [[b"WRDN", b"abcd", 2, 1, True], [b"x" * 65, b"y", 2, 1, False],
                     [1, 2, 0, 7, False], [1 << 70, 1, 2, 0, False], [b"a", "a", 2, 0, False],
                     [object, 1, 2, 0, False], "junk"]))
    assert a.branches == [100, 100, 102]
    assert a.cmps == [(b"WRDN", b"abcd", 2, 101, True)]


def test_replay_ignores_malformed_coverage():
    a = FakeAtheris()
    replay = Replay(a, 3)
    for value in (None, 5, [b"\0\0\0", b"\1", []], [b"\0" * 4, b"", []], [b"", b"", None],
                  [1, 2, 3], {"v": 1}):
        replay(value)
    assert a.branches == [] and a.cmps == []


def failure(line: int, type_: str = "ValueError") -> Verdict:
    exc = ExceptionInfo(type_, "m", "tb", (("/setup/t.py", line, "parse"),))
    return Verdict("exception", exception=exc, bucket=f"b{line}{type_}")


def test_one_input_per_bucket_across_jobs_and_runs(tmp_path):
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    jobs = [CrashStore(str(crashes), str(tmp_path / f"log{i}")) for i in range(2)]
    jobs[0].record(b"first", failure(1))
    jobs[1].record(b"second", failure(1))  # another job, same bug
    jobs[0].record(b"third", failure(1))
    jobs[1].record(b"other", failure(2))
    # A later run with the same directory keeps what the first one kept.
    CrashStore(str(crashes), str(tmp_path / "log2")).record(b"later", failure(1))
    assert sorted(p.name for p in crashes.iterdir()) == [
        "crash-b1ValueError", "crash-b1ValueError.json",
        "crash-b2ValueError", "crash-b2ValueError.json"]
    assert (crashes / "crash-b1ValueError").read_bytes() == b"first"
    kept = json.loads((crashes / "crash-b1ValueError.json").read_text())
    assert kept["input"] == "crash-b1ValueError" and kept["exception"]["type"] == "ValueError"
    rows = summarize(str(tmp_path / f"log{i}") for i in range(3))
    assert [(b.bucket, b.count, b.what, b.file) for b in rows] == [
        ("b1ValueError", 4, "ValueError", "crash-b1ValueError"),
        ("b2ValueError", 1, "ValueError", "crash-b2ValueError")]


def _left_by(pid: int) -> list[str]:
    """warden's cgroups and area mounts made by process ``pid`` that are still there."""
    left = [line.split()[4] for line in open("/proc/self/mountinfo")
            if f"/{pid}-" in line.split()[4]]
    for root, dirs, _files in os.walk("/sys/fs/cgroup"):
        left += [os.path.join(root, d) for d in dirs if d.startswith(f"warden-{pid}-")]
        if root.count(os.sep) >= 6:
            dirs[:] = []
    return left


def test_a_job_that_ends_leaves_no_sandbox_behind(tmp_path):
    native_ok()
    pytest.importorskip("atheris", reason="warden fuzz needs atheris (the dev extras)")
    target = tmp_path / "target"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    (target / "t.py").write_text("def TestOneInput(data):\n    return len(data)\n")
    (target / "t.py").chmod(0o644)
    work, corpus, crashes = (tmp_path / n for n in ("work", "corpus", "crashes"))
    for d in (work, corpus, crashes):
        d.mkdir()
    cfg = {"target": str(target / "t.py"), "corpus": str(corpus), "crashes": str(crashes),
           "time_s": 3, "max_len": 64, "per_input": {"memory_mb": 64, "wall_time_s": 5,
                                                      "cpu_time_s": None},
           "limits": None, "log": str(tmp_path / "log"), "workdir": str(work), "seed": 1}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    job = subprocess.Popen([sys.executable, "-m", "warden.testing.fuzzdriver",
                            str(tmp_path / "cfg.json")], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    _out, err = job.communicate(timeout=120)
    assert job.returncode == 0, err.decode()[-2000:]
    assert int((work / "runs").read_text()) > 0
    assert _left_by(job.pid) == []
