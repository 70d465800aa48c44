"""The pytest plugin of warden (entry point ``pytest11``; or ``-p warden.testing.plugin``).

For a test decorated with ``@warden.testing.isolated`` it starts the fork server before the
test runs (so that no example's time, which hypothesis measures against its deadline,
includes a sandbox's start) and closes it after; a failure's verdict is added to the report
as a section of its own."""

from __future__ import annotations

from typing import Any

from warden.testing.decorator import IsolatedFailure

__all__ = ["pytest_runtest_makereport", "pytest_runtest_setup", "pytest_runtest_teardown"]


def _runner(item: Any) -> Any:
    obj = getattr(item, "obj", None)
    seen = 0
    while obj is not None and seen < 16:
        runner = getattr(obj, "warden_runner", None)
        if runner is not None:
            return runner
        inner = getattr(getattr(obj, "hypothesis", None), "inner_test", None)
        obj = inner if inner is not None else getattr(obj, "__wrapped__", None)
        seen += 1
    return None


def pytest_runtest_setup(item: Any) -> None:
    runner = _runner(item)
    if runner is not None:
        runner.start()


def pytest_runtest_teardown(item: Any, nextitem: Any) -> None:
    runner = _runner(item)
    if runner is not None:
        runner.close()


def pytest_runtest_makereport(item: Any, call: Any) -> None:
    excinfo = getattr(call, "excinfo", None)
    if excinfo is None or not isinstance(excinfo.value, IsolatedFailure):
        return
    v = excinfo.value.verdict
    item.add_report_section(call.when, "warden verdict", "\n".join([
        f"outcome: {v.outcome}", f"signal: {v.signal}", f"bucket: {v.bucket}",
        f"duration_s: {v.duration_s:.4f}", f"peak_memory_bytes: {v.peak_memory_bytes}"]))
