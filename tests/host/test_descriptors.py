"""This process's descriptor budget: the soft limit raised to the hard one at first use of the
native provider, and running out named as HostResourceExhausted with the limit to raise."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys

import pytest
import warden
from warden.errors import HostResourceExhausted, SandboxSetupError
from warden.host import descriptors

# The warden these tests import (the tree's or the installed one), for their subprocesses.
PYTHONPATH = os.path.dirname(os.path.dirname(os.path.abspath(warden.__file__)))



def limits_after(code: str, env: dict | None = None) -> list[int]:
    """(soft, hard) RLIMIT_NOFILE after ``code`` ran in a fresh process started with a soft
    limit of 256."""
    script = ("import json, resource\n"
              "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
              f"{code}\n"
              "print(json.dumps(resource.getrlimit(resource.RLIMIT_NOFILE)))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": PYTHONPATH, **(env or {})})
    return json.loads(out.stdout)


def test_the_native_provider_raises_the_soft_limit_to_the_hard_one():
    soft, hard = limits_after("from warden.providers.registry import get_provider\n"
                              "get_provider('native')")
    if hard <= 256:
        pytest.skip(f"the hard limit here is {hard}: nothing to raise")
    assert soft == hard


def test_the_soft_limit_is_kept_when_asked():
    soft, _ = limits_after("from warden.host import descriptors\n"
                           "descriptors.raise_soft_limit()", {"WARDEN_RAISE_NOFILE": "0"})
    assert soft == 256


def test_importing_warden_leaves_the_limit_alone():
    soft, _ = limits_after("import warden\nwarden.Limits()")
    assert soft == 256


def test_running_out_names_the_process_limit_and_how_to_raise_it():
    err = descriptors.exhausted("worker socket", errno.EMFILE)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert (err.resource, err.limit, err.step) == ("RLIMIT_NOFILE", soft, "worker socket")
    text = str(err)
    assert f"hard limit {hard}" in text and "ulimit -n" in text and "LimitNOFILE" in text
    assert "nothing of it was left behind" in text


def test_running_out_system_wide_names_file_max():
    err = descriptors.exhausted("cgroup", errno.ENFILE)
    assert err.resource == "fs.file-max" and "sysctl" in str(err)


def fail(exc: BaseException):
    raise exc


def test_at_step_maps_only_running_out():
    with pytest.raises(HostResourceExhausted) as info:
        descriptors.at_step("network namespace", fail, OSError(errno.EMFILE, "too many"))
    assert info.value.step == "network namespace"
    with pytest.raises(HostResourceExhausted) as info:
        descriptors.at_step("cgroup", fail, SandboxSetupError("cgroup v1 mkdir", errno.EMFILE))
    assert info.value.step == "cgroup v1 mkdir"  # the setup error's own, finer step
    with pytest.raises(SandboxSetupError):
        descriptors.at_step("cgroup", fail, SandboxSetupError("cgroup v1 mkdir", errno.EACCES))
    with pytest.raises(PermissionError):
        descriptors.at_step("x", fail, PermissionError(errno.EPERM, "no"))
    assert descriptors.at_step("x", lambda a, b=0: a + b, 1, b=2) == 3
