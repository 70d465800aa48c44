"""The escape battery needs the native sandbox: root (or delegated cgroups), user namespaces,
seccomp. Off such a host the tests skip with the reason; under CI=true they fail."""

from __future__ import annotations

import os
import sys

import pytest

from tests.conftest import require

PY = sys.executable


@pytest.fixture(autouse=True)
def _native_sandbox_available():
    require(os.geteuid() == 0, "the native sandbox tests run as root (cgroup creation)")
    require(os.path.exists("/proc/self/ns/user"), "user namespaces are not available")


@pytest.fixture
def host_id():
    """A sandbox host id for a test that builds a spawn config itself, handed back after."""
    from warden.host import identity

    hid = identity.acquire()
    yield hid
    hid.release()


def py(code: str) -> list[str]:
    """argv running `code` with the host's Python inside the sandbox."""
    return [PY, "-c", code]
