"""warden doctor reports facts of this host; each is checked here against an independent
source (util-linux unshare, /proc files, a second real attempt), never a hard-coded answer."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest
from warden.host import doctor

# Also run in the cgroup-v2-only guest (scripts/v2-guest): the same facts, the other driver.
pytestmark = pytest.mark.cgroup2guest

UNSHARE_OPTS = {"user": "--user", "pid": "--pid --fork", "mount": "--mount", "net": "--net",
                "ipc": "--ipc", "uts": "--uts", "cgroup": "--cgroup"}


@pytest.fixture(scope="module")
def rep() -> dict:
    return doctor.report()


def test_namespaces_agree_with_util_linux_unshare(rep):
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("util-linux unshare is not installed to compare against")
    user_rc = subprocess.run([unshare, "--user", "true"], capture_output=True,
                             check=False).returncode
    assert rep["namespaces"]["user"]["ok"] == (user_rc == 0)
    for kind, opts in UNSHARE_OPTS.items():
        if kind == "user":
            continue
        # As doctor (and the sandbox) does: inside a new user namespace when one can be made,
        # otherwise directly (root without user namespaces).
        prefix = [unshare, "--user"] if user_rc == 0 else [unshare]
        rc = subprocess.run([*prefix, *opts.split(), "true"], capture_output=True,
                            check=False).returncode
        assert rep["namespaces"][kind]["ok"] == (rc == 0), kind
    assert rep["user_namespaces"] == rep["namespaces"]["user"]["ok"]


def test_seccomp_matches_proc(rep):
    with open("/proc/self/status") as f:
        has_seccomp = any(line.startswith("Seccomp:") for line in f)
    assert rep["seccomp"]["filter"] == has_seccomp
    path = "/proc/sys/kernel/seccomp/actions_avail"
    actions = []
    if os.path.exists(path):
        with open(path) as f:
            actions = f.read().split()
    assert rep["seccomp"]["actions_avail"] == actions
    assert rep["seccomp"]["user_notif"] == ("user_notif" in actions)


def test_landlock_abi_is_usable_when_reported(rep):
    abi = rep["landlock"]["abi"]
    if abi is None:
        assert rep["landlock"]["error"]
        return
    assert abi >= 1
    # A real ruleset handling LANDLOCK_ACCESS_FS_EXECUTE (bit 0) can be created with that ABI.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    attr = ctypes.c_uint64(1)
    fd = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(8), ctypes.c_uint32(0))
    assert fd >= 0, os.strerror(ctypes.get_errno())
    os.close(fd)


def test_cgroup_version_matches_proc_self_cgroup(rep):
    with open("/proc/self/cgroup") as f:
        v1_memory = any("memory" in line.split(":")[1].split(",") for line in f if line.strip())
    cg = rep["cgroup"]
    assert cg["version"] == (1 if v1_memory else 2)
    for c in ("memory", "pids"):
        assert c in cg["controllers"]


def test_bubblewrap_matches_path(rep):
    assert (rep["bubblewrap"]["path"] is not None) == (shutil.which("bwrap") is not None)


def test_the_network_policies_optional_parts_match_the_host(rep):
    import importlib.util

    n = rep["network"]
    assert n["tools"]["iptables-restore"] == shutil.which("iptables-restore")
    assert n["inject"] == (importlib.util.find_spec("cryptography") is not None)
    assert n["transparent"] == (os.geteuid() == 0 and n["modules"]["pyroute2"]
                                and None not in n["tools"].values())
    assert "mode='transparent'" in doctor.format_report(rep)


def test_verdict_follows_problems(rep):
    assert rep["ok"] == (rep["problems"] == [])
    # On a host where every probe succeeded the verdict must be yes, and each failed probe
    # must show up as a problem.
    all_ns = all(r["ok"] for r in rep["namespaces"].values())
    cg = rep["cgroup"]
    cg_ok = cg["version"] is not None and cg["delegation_ok"] and all(
        c in cg["controllers"] for c in ("memory", "pids", "cpu"))
    expected = all_ns and rep["seccomp"]["filter"] and cg_ok and rep["native_core"]["ok"]
    assert rep["ok"] == expected


def test_format_report_says_each_section_and_verdict(rep):
    text = doctor.format_report(rep)
    for word in ("namespaces", "seccomp", "landlock", "cgroups", "bubblewrap", "verdict"):
        assert word in text
    if rep["ok"]:
        assert "can run on this host" in text
    else:
        assert "CANNOT run" in text
        assert rep["problems"][0] in text
    if rep["cgroup"]["version"] is not None:
        assert f"version {rep['cgroup']['version']}" in text


def test_host_ids_report_the_range_and_what_claims_it(rep, tmp_path, monkeypatch):
    ids = rep["host_ids"]
    assert (ids["base"], ids["count"]) == (doctor.identity.pool().base,
                                           doctor.identity.pool().count)
    # An account inside the range is found, and makes the verdict a problem.
    passwd = tmp_path / "passwd"
    passwd.write_text(f"root:x:0:0::/root:/bin/sh\nintruder:x:{ids['base'] + 7}:0::/:/bin/sh\n")
    real_open = open

    def fake_open(path, *a, **kw):
        return real_open(passwd if path == "/etc/passwd" else path, *a, **kw)

    monkeypatch.setattr("builtins.open", fake_open)
    probed = doctor._probe_host_ids()
    assert probed["claimed"] == [f"/etc/passwd: intruder ({ids['base'] + 7})"]
