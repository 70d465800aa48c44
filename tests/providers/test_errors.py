"""The one mapping from an error reply's fields to what a sandbox's caller sees (pure: no
sandbox needed; the real sandboxes' errors are in tests/sandboxes and tests/plugins)."""

from __future__ import annotations

import errno

import pytest
from warden.errors import (
    DiskQuotaExceeded,
    PathEscapeError,
    PidsLimitExceeded,
    PluginError,
    SandboxFileNotFound,
    sandbox_file_error,
)
from warden.providers.base import SandboxHandle, SandboxSpec
from warden.providers.errors import sandbox_error
from warden.spec.limits import Limits
from warden.wire import ops

HANDLE = SandboxHandle(id="box-1", provider="test",
                       spec=SandboxSpec(limits=Limits(disk_mb=8, pids=16)), labels={})


def plugin_error(kind="OSError", message="", **fields) -> PluginError:
    return PluginError(kind, message, "Traceback ...", **fields)


def test_enospc_of_the_code_is_the_disk_quota():
    exc = plugin_error("OSError", "[Errno 28] No space left on device", errno=errno.ENOSPC)
    err = sandbox_error(exc, HANDLE, ops.CALL_FN)
    assert type(err) is DiskQuotaExceeded and "8 MiB" in str(err) and "box-1" in str(err)
    assert err.__cause__ is exc  # the code's own traceback stays reachable


def test_enospc_of_a_file_write_is_the_disk_quota():
    exc = sandbox_file_error(errno.ENOSPC, "big.bin")
    err = sandbox_error(exc, HANDLE, ops.WRITE_FILE, path="big.bin")
    assert type(err) is DiskQuotaExceeded and "write of 'big.bin'" in str(err)


def test_message_text_decides_nothing():
    exc = plugin_error("OSError", "[Errno 28] No space left on device")  # no errno field
    err = sandbox_error(exc, HANDLE, ops.CALL_FN, pids_limit_hit=lambda: True)
    assert type(err) is PluginError
    exc = plugin_error("RuntimeError", "can't start new thread")  # no resource field
    assert type(sandbox_error(exc, HANDLE, ops.CALL, pids_limit_hit=lambda: True)) is PluginError


@pytest.mark.parametrize("fields", [{"errno": errno.EAGAIN}, {"resource": "thread"}])
def test_eagain_or_a_thread_is_the_pids_limit_only_when_the_cgroup_says_so(fields):
    exc = plugin_error("BlockingIOError", "[Errno 11] Resource temporarily unavailable",
                       **fields)
    hit = sandbox_error(exc, HANDLE, ops.CALL, pids_limit_hit=lambda: True)
    assert type(hit) is PidsLimitExceeded and "pids limit of 16" in str(hit)
    assert "[Errno 11]" in str(hit)  # the code's own words are quoted, not read
    for answer in (lambda: False, None):
        assert type(sandbox_error(exc, HANDLE, ops.CALL, pids_limit_hit=answer)) is PluginError


def test_the_codes_error_is_said_to_come_from_the_sandbox():
    exc = plugin_error("KeyError", "'k'", errno=None)
    err = sandbox_error(exc, HANDLE, ops.CALL_FN)
    assert type(err) is PluginError
    assert str(err) == "code in sandbox box-1 raised KeyError: 'k'"
    assert (err.type, err.message, err.traceback) == ("KeyError", "'k'", "Traceback ...")


def test_a_file_error_names_the_callers_path_the_op_and_the_sandbox():
    exc = sandbox_file_error(errno.ENOENT, "what/the/worker/said")
    err = sandbox_error(exc, HANDLE, ops.READ_FILE, path="./given.txt")
    assert type(err) is SandboxFileNotFound and err.filename == "./given.txt"
    assert str(err).startswith("cannot read './given.txt' in sandbox box-1")


def test_other_errors_pass_unchanged():
    exc = PathEscapeError("no", path="x")
    assert sandbox_error(exc, HANDLE, ops.READ_FILE) is exc
