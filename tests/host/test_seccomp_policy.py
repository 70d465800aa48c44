"""The seccomp policy tables as the binding exposes them, and the compiled program's shape."""

from __future__ import annotations

import errno
import struct

from hypothesis import given
from hypothesis import strategies as st
from warden import _core

TIOCSTI, TIOCLINUX = 0x5412, 0x541C
# What issue 2 requires the filter to refuse.
MUST_DENY = {
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "io_setup",
    "io_submit",
    "io_getevents",
    "io_pgetevents",
    "io_cancel",
    "io_destroy",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "stime",
    "acct",
    "quotactl",
    "swapon",
    "swapoff",
    "reboot",
}


def _rules(policy, syscall):
    return [r for r in policy["conditional"] if r["syscall"] == syscall]


def _allows(rules, value):
    return any((value & r["mask"]) == r["value"] for r in rules)


def test_default_is_eperm_and_foreign_arches_are_killed():
    p = _core.seccomp_policy()
    assert (p["default_action"], p["default_errno"]) == ("errno", errno.EPERM)
    assert p["bad_arch_action"] == "kill_process"
    assert any("i386" in a for a in p["killed_arches"])
    assert any("x32" in a for a in p["killed_arches"])


def test_denied_and_allowed_are_disjoint_and_cover_the_required_list():
    p = _core.seccomp_policy(True)
    allowed = set(p["allowed"])
    denied = {d["syscall"] for d in p["denied"]}
    assert MUST_DENY <= denied
    assert not allowed & denied
    conditional = {r["syscall"] for r in p["conditional"]}
    assert not conditional & (allowed | denied)
    assert all(d["errno"] == errno.EPERM and d["why"] for d in p["denied"])


def test_clone3_and_newer_calls_answer_enosys():
    p = _core.seccomp_policy()
    rules = {r["syscall"]: r["errno"] for r in p["errno_rules"]}
    assert rules["clone3"] == errno.ENOSYS
    # Only ENOSYS: any other fixed errno would stop a caller's fallback.
    assert set(rules.values()) == {errno.ENOSYS}


def test_clone_without_namespace_flags_only():
    rules = _rules(_core.seccomp_policy(), "clone")
    assert [(r["arg"], r["mask"], r["value"]) for r in rules] == [(0, 0x7E020000, 0)]


def test_personality_only_docker_harmless_values():
    rules = _rules(_core.seccomp_policy(), "personality")
    assert {r["value"] for r in rules} == {0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF}
    assert not _allows(rules, 0x0040000)  # ADDR_NO_RANDOMIZE


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_ioctl_rules_refuse_exactly_tiocsti_and_tioclinux_on_low_32_bits(value):
    rules = _rules(_core.seccomp_policy(), "ioctl")
    low = value & 0xFFFFFFFF
    assert _allows(rules, value) == (low not in (TIOCSTI, TIOCLINUX))


@given(
    st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from([TIOCSTI, TIOCLINUX])
)
def test_ioctl_refused_requests_with_any_high_bits(high, request):
    rules = _rules(_core.seccomp_policy(), "ioctl")
    assert not _allows(rules, (high << 32) | request)
    assert _allows(rules, (high << 32) | 0x5401)  # TCGETS


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_socket_families(value):
    for inet in (False, True):
        p = _core.seccomp_policy(inet)
        ok = {1, 2, 10} if inet else {1}
        for call in ("socket", "socketpair"):
            assert _allows(_rules(p, call), value) == ((value & 0xFFFFFFFF) in ok)


def test_compiled_program_shape():
    prog = _core.seccomp_compile()
    assert len(prog) % 8 == 0
    n = len(prog) // 8
    assert 0 < n <= 4096  # BPF_MAXINSNS
    # The last instruction of a seccomp program is a return (BPF_RET | BPF_K = 0x06).
    code, _jt, _jf, _k = struct.unpack_from("<HBBI", prog, (n - 1) * 8)
    assert code & 0x07 == 0x06
    assert _core.seccomp_compile() == prog  # deterministic: safe to cache
    assert _core.seccomp_compile(allow_inet=True) != prog


def test_native_numbers_resolve_the_required_calls():
    p = _core.seccomp_policy()
    numbers = p["native_numbers"]
    for name in (
        "read",
        "write",
        "execve",
        "clone",
        "ioctl",
        "socket",
        "mount",
        "ptrace",
        "bpf",
    ):
        assert numbers[name] >= 0, name
