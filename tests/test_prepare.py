"""The preparer hands out every cgroup and network namespace once, and removes released
cgroups for real."""

from __future__ import annotations

import os

import pytest

from tests.conftest import require
from warden.prepare import Preparer


@pytest.fixture
def prep():
    require(os.geteuid() == 0, "creating cgroups and network namespaces needs root")
    p = Preparer(depth=2)
    yield p
    p.close()


def test_each_cgroup_is_new_and_released_ones_are_removed(prep):
    got = [prep.cgroup(64 << 20, 8, 0.5) for _ in range(5)]
    paths = [c.path for c in got]
    assert len(set(paths)) == 5
    for c in got:
        assert os.path.isdir(c.path)
        prep.release(c)
    prep.drain()
    for path in paths:
        assert not os.path.exists(path)


def test_each_network_namespace_is_new(prep):
    fds = [prep.netns() for _ in range(4)]
    try:
        inodes = {os.fstat(fd).st_ino for fd in fds}
        assert len(inodes) == 4
        assert os.stat("/proc/self/ns/net").st_ino not in inodes
    finally:
        for fd in fds:
            os.close(fd)


def test_close_closes_the_ready_namespaces(prep):
    os.close(prep.netns())  # wakes the thread, which fills the pool
    prep.drain()
    ready = list(prep._netns)
    prep.close()
    assert not prep._netns
    for fd in ready:
        with pytest.raises(OSError):
            os.fstat(fd)
