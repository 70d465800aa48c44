"""A fork server shared by the tests of one module: its setup is the module's SETUP."""

from __future__ import annotations

import pytest

from tests.plugins.test_plugins import native_ok


@pytest.fixture(scope="module")
def fs(request):
    native_ok()
    import warden

    setup = request.module.SETUP
    limits = getattr(request.module, "PER_INPUT", warden.Limits(wall_time_s=3, memory_mb=64))
    with warden.ForkServer(setup, per_input=limits) as server:
        yield server
