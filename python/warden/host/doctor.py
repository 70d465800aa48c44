"""What this host can give a sandbox, found by trying it: ``warden doctor``.

Every check is a real attempt (a namespace is unshared in a forked child, a seccomp filter is
installed there, Landlock is asked for its ABI), never a guess from version numbers, so the
report says what warden would meet when it runs.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import shutil
import struct
import subprocess
from typing import Any

from warden.errors import ProviderUnavailable, WardenError
from warden.host import cgroups, identity

__all__ = ["NAMESPACE_FLAGS", "format_report", "report"]

# <linux/sched.h>
NAMESPACE_FLAGS = {
    "user": 0x10000000,    # CLONE_NEWUSER
    "pid": 0x20000000,     # CLONE_NEWPID
    "mount": 0x00020000,   # CLONE_NEWNS
    "net": 0x40000000,     # CLONE_NEWNET
    "ipc": 0x08000000,     # CLONE_NEWIPC
    "uts": 0x04000000,     # CLONE_NEWUTS
    "cgroup": 0x02000000,  # CLONE_NEWCGROUP
}
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_BPF_RET_K = 0x06
_SYS_LANDLOCK_CREATE_RULESET = 444  # same number on every architecture (unified table)
_LANDLOCK_CREATE_RULESET_VERSION = 1

# What the default sandbox needs; everything else in the report is informational.
_NEEDED_CONTROLLERS = ("memory", "pids", "cpu")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _in_child(fn) -> list[int]:
    """Run ``fn() -> list[int]`` in a forked child (its effects, namespaces and filters, die with
    it) and return what it produced. A child that crashes yields []."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        # Child: only raw syscalls and os._exit; nothing that could unwind into the parent's
        # state (no exceptions escape, no atexit handlers run).
        code = 0
        try:
            out = fn()
            os.write(w, struct.pack(f"{len(out)}i", *out))
        except BaseException:
            code = 1
        os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return list(struct.unpack(f"{len(data) // 4}i", data))


def _probe_namespaces() -> dict[str, dict]:
    """unshare each namespace kind in a child, the way the sandbox does: a user namespace first
    (which, as on an unprivileged host, gives the capabilities the other kinds need), then each
    other kind on its own."""
    kinds = list(NAMESPACE_FLAGS)

    def probe() -> list[int]:
        libc = _libc()
        res = []
        for k in kinds:
            rc = libc.unshare(NAMESPACE_FLAGS[k])
            # A failed user namespace does not stop the rest: root may unshare them directly.
            res.append(0 if rc == 0 else (ctypes.get_errno() or -1))
        return res

    errs = _in_child(probe)
    out = {}
    for i, k in enumerate(kinds):
        if i < len(errs):
            e = errs[i]
            out[k] = {"ok": e == 0, "error": "" if e == 0 else os.strerror(e)}
        else:
            out[k] = {"ok": False, "error": "probe process crashed"}
    return out


def _probe_seccomp() -> dict:
    actions: list[str] = []
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            actions = f.read().split()
    except FileNotFoundError:
        pass  # kernel without seccomp filter support (or /proc/sys hidden): reported as such

    def probe() -> list[int]:
        libc = _libc()
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return [ctypes.get_errno() or -1]
        # The smallest filter there is: one instruction, "allow".
        insn = struct.pack("HBBI", _BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW)
        buf = ctypes.create_string_buffer(insn, len(insn))

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        prog = SockFprog(1, ctypes.addressof(buf))
        rc = libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0)
        return [0 if rc == 0 else (ctypes.get_errno() or -1)]

    errs = _in_child(probe)
    e = errs[0] if errs else -1
    return {
        "filter": e == 0,
        "error": "" if e == 0 else (os.strerror(e) if e > 0 else "probe process crashed"),
        "actions_avail": actions,
        "user_notif": "user_notif" in actions,
    }


def _probe_landlock() -> dict:
    libc = _libc()
    abi = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 0:
        e = ctypes.get_errno()
        # ENOSYS: not built in; EOPNOTSUPP: built in but not enabled at boot (lsm=).
        return {"abi": None, "error": os.strerror(e) if e else "unknown"}
    return {"abi": int(abi), "error": ""}


def _probe_userns_limits() -> dict:
    out = {}
    for name, path in (("max_user_namespaces", "/proc/sys/user/max_user_namespaces"),
                       ("unprivileged_userns_clone",
                        "/proc/sys/kernel/unprivileged_userns_clone"),
                       ("apparmor_restrict_unprivileged_userns",
                        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns")):
        try:
            with open(path) as f:
                out[name] = int(f.read().strip())
        except (FileNotFoundError, ValueError):
            continue  # the knob does not exist on this kernel: nothing to report
    return out


def _probe_cgroups() -> dict:
    try:
        d = cgroups.driver()
    except ProviderUnavailable as exc:
        return {"version": None, "error": str(exc), "controllers": [], "delegation_ok": False}
    info = d.describe()
    info["error"] = info.get("delegation_error", "")
    return info


def _probe_host_ids() -> dict[str, Any]:
    """The sandbox id range, and whatever else on the host claims ids inside it: an account
    there would share its kernel budgets (and its files) with a sandbox."""
    try:
        pool = identity.pool()
    except WardenError as exc:
        return {"base": None, "count": None, "lock": None, "error": str(exc), "claimed": []}
    first, last = pool.base, pool.base + pool.count
    claimed: list[str] = []
    for path in ("/etc/passwd", "/etc/group"):
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split(":")
                    if len(parts) > 2 and parts[2].isdigit() and first <= int(parts[2]) <= last:
                        claimed.append(f"{path}: {parts[0]} ({parts[2]})")
        except FileNotFoundError:
            continue
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                claimed += [f"{path}: {line}" for line in
                            identity.overlaps(f.read(), pool.base, pool.count)]
        except FileNotFoundError:
            continue
    return {"base": pool.base, "count": pool.count, "lock": pool.lock_path, "error": "",
            "claimed": claimed}


def _probe_bwrap() -> dict:
    path = shutil.which("bwrap")
    if path is None:
        return {"path": None, "version": None}
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        out = f"unusable: {exc}"
    return {"path": path, "version": out}


def _probe_network() -> dict:
    """What the network policy's optional parts need (none of it is needed by the default
    sandbox, whose network is "none"): found, not imported (warden.host.net imports them)."""
    found = {m: importlib.util.find_spec(m) is not None for m in ("pyroute2", "cryptography")}
    tools = {t: shutil.which(t) for t in ("nsenter", "iptables-restore")}
    return {"modules": found, "tools": tools,
            "transparent": found["pyroute2"] and None not in tools.values()
            and os.geteuid() == 0,
            "inject": found["cryptography"]}


def _probe_native() -> dict:
    try:
        from warden import _core  # noqa: F401 - importing it is the check
    except ImportError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "error": ""}


def report() -> dict:
    """What this host supports, and whether the default sandbox can run (``ok``)."""
    ns = _probe_namespaces()
    sec = _probe_seccomp()
    cg = _probe_cgroups()
    native = _probe_native()
    ids = _probe_host_ids()
    problems: list[str] = []
    if ids["error"]:
        problems.append(f"no sandbox id range: {ids['error']}")
    for c in ids["claimed"]:
        problems.append(f"an id of the sandbox range is taken elsewhere: {c}; move "
                        "WARDEN_UID_BASE or that entry")
    for kind, r in ns.items():
        if not r["ok"]:
            problems.append(f"cannot create a {kind} namespace ({r['error']})")
    if not sec["filter"]:
        problems.append(f"cannot install a seccomp filter ({sec['error']})")
    if cg["version"] is None:
        problems.append(f"no usable cgroups: {cg['error']}")
    else:
        missing = [c for c in _NEEDED_CONTROLLERS if c not in cg["controllers"]]
        if missing:
            problems.append(f"cgroup controllers missing: {', '.join(missing)}")
        if not cg["delegation_ok"]:
            problems.append(f"cannot create cgroups below warden's own cgroup "
                            f"({cg.get('error') or 'not delegated'})")
    if not native["ok"]:
        problems.append(f"the native core warden._core does not load ({native['error']}); "
                        "build it with scripts/dev-build or pip install")
    return {
        "kernel": platform.release(),
        "uid": os.geteuid(),
        "namespaces": ns,
        "user_namespaces": ns["user"]["ok"],
        "userns_limits": _probe_userns_limits(),
        "seccomp": sec,
        "landlock": _probe_landlock(),
        "cgroup": cg,
        "host_ids": ids,
        "bubblewrap": _probe_bwrap(),
        "native_core": native,
        "network": _probe_network(),
        "problems": problems,
        "ok": not problems,
    }


def _mark(ok: bool) -> str:
    return "ok  " if ok else "NO  "


def format_report(d: dict) -> str:
    """The report as text for a terminal: one line per fact, the verdict last."""
    lines = [f"warden doctor: kernel {d['kernel']}, uid {d['uid']}", "", "namespaces"]
    for kind, r in d["namespaces"].items():
        lines.append(f"  {_mark(r['ok'])}{kind}" + (f"  ({r['error']})" if r["error"] else ""))
    for k, v in d["userns_limits"].items():
        lines.append(f"        {k} = {v}")
    s = d["seccomp"]
    lines += ["", "seccomp",
              f"  {_mark(s['filter'])}filter" + (f"  ({s['error']})" if s["error"] else ""),
              f"  {_mark(s['user_notif'])}user_notif",
              f"        actions: {' '.join(s['actions_avail']) or 'none'}"]
    ll = d["landlock"]
    lines += ["", "landlock",
              f"  {_mark(ll['abi'] is not None)}"
              + (f"ABI {ll['abi']}" if ll["abi"] is not None else f"absent ({ll['error']})")]
    cg = d["cgroup"]
    lines += ["", "cgroups"]
    if cg["version"] is None:
        lines.append(f"  NO  {cg['error']}")
    else:
        lines.append(f"  ok  version {cg['version']}")
        for c in _NEEDED_CONTROLLERS:
            lines.append(f"  {_mark(c in cg['controllers'])}{c}")
        lines.append(f"  {_mark(cg['delegation_ok'])}delegation (create below own cgroup)"
                     + (f"  ({cg['error']})" if cg.get("error") else ""))
        for c, p in sorted(cg.get("parents", {}).items()):
            lines.append(f"        {c}: {p}")
        lines.append(f"        kill: {cg.get('kill')}, swap limit: {cg.get('swap_limit')}, "
                     f"pause: {cg.get('pause')}")
    ids = d["host_ids"]
    lines += ["", "sandbox host ids"]
    if ids["base"] is None:
        lines.append(f"  NO  {ids['error']}")
    else:
        lines.append(f"  {_mark(not ids['claimed'])}{ids['base']} (set-up) and "
                     f"{ids['base'] + 1}..{ids['base'] + ids['count']}, lock {ids['lock']}")
        lines += [f"        taken elsewhere: {c}" for c in ids["claimed"]]
    b = d["bubblewrap"]
    lines += ["", "other",
              f"  {_mark(b['path'] is not None)}bubblewrap"
              + (f"  {b['path']} ({b['version']})" if b["path"] else "  (not installed)"),
              f"  {_mark(d['native_core']['ok'])}native core warden._core"
              + (f"  ({d['native_core']['error']})" if d["native_core"]["error"] else "")]
    n = d["network"]
    lines += ["", "network policies (optional)",
              f"  {_mark(n['transparent'])}mode='transparent' (root, pyroute2, "
              + ", ".join(f"{t} {p or 'missing'}" for t, p in n["tools"].items()) + ")",
              f"  {_mark(n['inject'])}inject (cryptography)"]
    lines.append("")
    if d["ok"]:
        lines.append("verdict: the default sandbox can run on this host")
    else:
        lines.append("verdict: the default sandbox CANNOT run on this host:")
        lines += [f"  - {p}" for p in d["problems"]]
    return "\n".join(lines) + "\n"
