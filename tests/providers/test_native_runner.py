"""The pure parts of warden.run: environment, argv checks, the verdict from raw outcomes."""

from __future__ import annotations

import os
import signal

import pytest
import warden
from warden.host import environ
from warden.host.cgroups import CgroupStats
from warden.providers.native import runner


def _out(**kw):
    base = dict(timed_out=False, have_status=True, wait_status=0, init_wait_status=0,
                stdout=b"", stderr=b"", stdout_truncated=False, stderr_truncated=False,
                stdout_dropped=0, stderr_dropped=0,
                duration_s=0.01, disk_free_bytes=1 << 20, disk_total_bytes=1 << 26,
                disk_full_at_kill=False, cpu_user_us=0, cpu_sys_us=0, max_rss_kb=100, pid=1)
    base.update(kw)
    return base


def _stats(**kw):
    base = dict(oom_kills=0, memory_limit_hit=False, pids_limit_hit=False,
                peak_memory_bytes=4096, cpu_usage_ns=None)
    base.update(kw)
    return CgroupStats(**base)


LIM = warden.Limits()


def test_exit_code():
    r = runner.verdict(_out(wait_status=3 << 8), _stats(), LIM)
    assert (r.reason, r.exit_code, r.signal, r.limits_hit) == ("exited", 3, None, frozenset())


def test_timeout_wins():
    r = runner.verdict(_out(timed_out=True, have_status=False), _stats(), LIM)
    assert r.reason == "timeout" and r.exit_code is None and r.signal == signal.SIGKILL


def test_sigsys_is_seccomp():
    r = runner.verdict(_out(wait_status=signal.SIGSYS), _stats(), LIM)
    assert r.reason == "seccomp" and r.signal == signal.SIGSYS


def test_sigkill_with_oom_is_memory():
    r = runner.verdict(_out(wait_status=signal.SIGKILL), _stats(oom_kills=1), LIM)
    assert r.reason == "memory" and "memory" in r.limits_hit


def test_init_killed_by_oom_group_is_memory():
    r = runner.verdict(_out(have_status=False, init_wait_status=signal.SIGKILL),
                       _stats(oom_kills=2), LIM)
    assert r.reason == "memory"


def test_plain_sigkill_is_signaled():
    r = runner.verdict(_out(wait_status=signal.SIGKILL), _stats(), LIM)
    assert r.reason == "signaled" and r.limits_hit == frozenset()


def test_limits_hit_even_when_it_survived():
    r = runner.verdict(_out(disk_free_bytes=0), _stats(pids_limit_hit=True,
                                                         memory_limit_hit=True), LIM)
    assert r.reason == "exited" and r.limits_hit == {"disk", "pids", "memory"}


def test_file_size_and_cpu_time():
    r = runner.verdict(_out(wait_status=signal.SIGXFSZ), _stats(), LIM)
    assert "file_size" in r.limits_hit
    lim = warden.Limits(cpu_time_s=2)
    r = runner.verdict(_out(wait_status=signal.SIGKILL, cpu_user_us=2_100_000), _stats(), lim)
    assert "cpu_time" in r.limits_hit


def test_clean_environment_with_fixed_keys():
    env = dict(e.split("=", 1) for e in environ.sandbox_env({"A": "1"}))
    assert set(env) == {"PATH", "HOME", "LANG", "A"}
    assert env["HOME"] == "/workspace"


@pytest.mark.parametrize("bad", [{"": "x"}, {"A=B": "x"}, {"A": "x\0y"}, {"A\0": "x"}])
def test_bad_environment_refused(bad):
    with pytest.raises(ValueError):
        environ.sandbox_env(bad)


def test_argv_checks():
    with pytest.raises(ValueError):
        warden.run([])
    with pytest.raises(ValueError):
        warden.run(["/bin/true", "a\0b"])
    with pytest.raises(ValueError, match="absolute"):
        warden.run(["/bin/true"], cwd="relative")


def test_network_other_than_none_is_refused_not_weakened():
    # "host" is no policy warden knows: the caller's mistake, not something this host lacks.
    with pytest.raises(warden.InvalidArgument, match="network") as info:
        warden.run(["/bin/true"], network="host")
    assert (info.value.argument, info.value.value) == ("network", "host")


def test_exec_candidates_follow_path():
    assert runner._exec_candidates("/bin/ls", "/a:/b") == ["/bin/ls"]
    assert runner._exec_candidates("ls", "/a:/b:rel") == ["/a/ls", "/b/ls"]


def test_python_installation_is_bound():
    for p in environ.python_paths():
        assert os.path.isdir(p)
