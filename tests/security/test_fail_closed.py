"""Fail closed: when a step of the set-up cannot be done, nothing runs, and the error names
the step and the errno."""

from __future__ import annotations

import errno
import os

import pytest
import warden
from warden import _core
from warden.providers.native import runner


def test_a_missing_command_is_not_a_setup_failure():
    """The sandbox was whole, so a command that is not there is the command's outcome (exit
    127, as in a shell), never SandboxSetupError, which means a protection did not come up."""
    res = warden.run(["/no/such/program"])
    assert (res.reason, res.exit_code) == ("exited", 127)


def test_missing_working_directory_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(warden.SandboxSetupError) as exc:
        warden.run(["/bin/sh", "-c", f"touch {marker}"], cwd="/no/such/dir")
    assert exc.value.step == "chdir" and exc.value.errno == errno.ENOENT
    assert not marker.exists()


def test_unbindable_path_is_refused_before_clone(host_id):
    cfg = runner.base_config(warden.Limits())
    cfg.update(host_id.config())
    cfg.update(ro_paths=["/no/such/path"])
    with pytest.raises(warden.SandboxSetupError) as exc:
        _core.PreparedSandbox(cfg)
    assert exc.value.step == "plan-root" and exc.value.errno == errno.ENOENT


def test_unknown_config_key_is_refused_not_ignored(host_id):
    # A misspelt key would otherwise leave its setting at the default (here: 256 files).
    cfg = runner.base_config(warden.Limits())
    cfg.update(host_id.config())
    cfg.update(open_file=16)
    with pytest.raises(ValueError, match=r"unknown key 'open_file'.*\bopen_files\b"):
        _core.PreparedSandbox(cfg)
    # fork_sandboxed refuses it before forking; the empty program would stop it there anyway,
    # so that a regression cannot leave a forked copy of the test process running.
    cfg.update(seccomp=b"")
    with pytest.raises(ValueError, match="unknown key 'open_file'"):
        _core.fork_sandboxed(cfg)
    with pytest.raises(ValueError, match="unknown key 1;"):
        _core.PreparedSandbox({**runner.base_config(warden.Limits()), **host_id.config(), 1: 2})


def test_native_provider_config_has_only_known_keys(host_id):
    # The config the native provider sends its zygote, with the keys the zygote adds.
    from warden.providers.base import SandboxSpec
    from warden.providers.native import NativeProvider

    cfg = NativeProvider()._config(SandboxSpec(), None)
    cfg.update(cgroup_procs=[], hold_mount_ns=True, pass_fds=[], netns_fd=-1, cgroup_fd=-1)
    cfg.update(host_id.config())
    box = _core.PreparedSandbox(cfg)
    try:
        assert box.ready()
    finally:
        box.close()


def test_no_seccomp_program_means_no_sandbox(host_id):
    cfg = runner.base_config(warden.Limits())
    cfg.update(host_id.config())
    cfg.update(seccomp=b"")
    with pytest.raises(ValueError, match="seccomp"):
        _core.PreparedSandbox(cfg)


def test_unplaceable_cgroup_makes_no_sandbox(tmp_path, host_id):
    # A sandbox is whole before it is told its command: a failed step means no sandbox at all,
    # so there is nothing that a command could be started in.
    cfg = runner.base_config(warden.Limits())
    cfg.update(host_id.config())
    cfg.update(cgroup_procs=[str(tmp_path / "no-cgroup.procs")])
    with pytest.raises(warden.SandboxSetupError) as exc:
        _core.PreparedSandbox(cfg)
    assert exc.value.step == "cgroup-place"


def test_rlimit_too_high_is_refused_not_clamped(host_id):
    # open_files beyond the kernel's nr_open cannot be set: the run must not go ahead with less.
    with open("/proc/sys/fs/nr_open") as f:
        nr_open = int(f.read())
    cfg = runner.base_config(warden.Limits())
    cfg.update(host_id.config())
    cfg.update(open_files=nr_open + 1)
    with pytest.raises(warden.SandboxSetupError) as exc:
        _core.PreparedSandbox(cfg)
    assert exc.value.step == "rlimit"


def test_setup_error_is_a_warden_error():
    assert issubclass(warden.SandboxSetupError, warden.WardenError)
    e = warden.SandboxSetupError("mount-private", errno.EPERM)
    assert "mount-private" in str(e) and "EPERM" in str(e) and os.strerror(errno.EPERM) in str(e)


def test_no_host_id_means_no_sandbox():
    # Without its own host id a sandbox would spend host root's per-user budgets: refused.
    cfg = runner.base_config(warden.Limits())
    with pytest.raises(ValueError, match="host_id"):
        _core.PreparedSandbox(cfg)
