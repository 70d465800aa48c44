"""spec.result and the peak of spec.verdict: what one exec keeps of its output, and where its
peak memory comes from. Pure."""

from __future__ import annotations

from warden.spec.result import PEAK_SOURCES, ExecResult, exec_output_cap
from warden.spec.verdict import exec_peak

MiB = 1 << 20


def test_the_output_cap_is_bounded_by_the_sandbox_memory():
    assert exec_output_cap(64, None) == 4 * MiB
    assert exec_output_cap(64, 10) == 10
    assert exec_output_cap(64, 1 << 40) == 4 * MiB
    assert exec_output_cap(4, None) == 256 << 10
    assert exec_output_cap(4, 0) == 0


def test_the_peak_of_one_exec_says_where_it_came_from():
    assert exec_peak(window=5 * MiB, before=90 * MiB, after=90 * MiB, process=1) == (
        5 * MiB, "exec")
    # The sandbox's highest point rose during the command: it was reached then.
    assert exec_peak(window=None, before=10 * MiB, after=30 * MiB, process=MiB) == (
        30 * MiB, "exec")
    # It did not: only the command's own processes say anything of it.
    assert exec_peak(window=None, before=90 * MiB, after=90 * MiB, process=MiB) == (
        MiB, "process")
    assert exec_peak(window=None, before=0, after=0, process=0) == (0, "none")
    assert {s for *_, s in [exec_peak(window=None, before=0, after=0, process=0)]} <= set(
        PEAK_SOURCES)


def test_an_exec_result_counts_what_it_dropped():
    r = ExecResult(0, None, b"x", b"", "exited")
    assert (r.stdout_dropped, r.stderr_dropped, r.peak_memory_source) == (0, 0, "none")
