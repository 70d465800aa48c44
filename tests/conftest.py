"""Shared test policy: a test that needs a capability this host lacks skips with the reason
printed, except under CI=true, where a missing capability is a failure."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, why: str) -> None:
    """Skip (or, in CI, fail) the calling test unless ``condition`` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required capability missing in CI: {why}")
    pytest.skip(why)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line(
        "markers", "cgroup2guest: also runs inside the cgroup-v2-only guest of scripts/v2-guest")
