"""The v2 driver: one unified hierarchy, delegated below the cgroup warden runs in."""

from __future__ import annotations

import errno
import os
import time

from warden.errors import CgroupTeardownError, ProviderUnavailable, SandboxSetupError
from warden.host.cgroups.base import (
    _OWNER_RE,
    CPU_PERIOD_US,
    TEARDOWN_TIMEOUT_S,
    CgroupDriver,
    CgroupStats,
    PeakWindow,
    SandboxCgroup,
    _is_descendant,
    _kernel_at_least,
    _kill_pids,
    _read,
    _read_int,
    _read_keyed,
    _read_pids,
    _remove_parent,
    _reset_peak,
    _rmdir_until_gone,
    _setup,
    _swap_enabled,
    _sweep_base,
    _wait_frozen,
    _write,
    cpu_quota_us,
)

# ----------------------------------------------------------------------------------------------
# v2: one unified hierarchy.


class V2Cgroup(SandboxCgroup):
    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._destroyed = False

    def procs_files(self) -> list[str]:
        return []

    def dir_fd(self) -> int | None:
        return self._fd if self._fd >= 0 else None

    def pids(self) -> list[int]:
        return _read_pids(os.path.join(self.path, "cgroup.procs"))

    def stats(self) -> CgroupStats:
        ev = _read_keyed(os.path.join(self.path, "memory.events"))
        pev = _read_keyed(os.path.join(self.path, "pids.events"))
        cpu = _read_keyed(os.path.join(self.path, "cpu.stat"))
        peak = _read_int(os.path.join(self.path, "memory.peak")) or 0
        usage = cpu.get("usage_usec")
        reached = ev.get("max", 0) + ev.get("oom", 0)
        return CgroupStats(
            oom_kills=ev.get("oom_kill", 0),
            memory_limit_hit=reached > 0,
            pids_limit_hit=pev.get("max", 0) > 0,
            peak_memory_bytes=peak,
            cpu_usage_ns=usage * 1000 if usage is not None else None,
            memory_max_events=reached,
            pids_max_events=pev.get("max", 0),
        )

    def peak_window(self) -> PeakWindow | None:
        # Since Linux 6.12 a write to memory.peak resets it for reads through the same open
        # file, leaving every other reader's peak alone (Documentation/admin-guide/
        # cgroup-v2.rst, memory.peak); before, the file is read-only and open() refuses.
        return _reset_peak(os.path.join(self.path, "memory.peak"), b"reset\n")

    def _populated(self) -> bool:
        return _read_keyed(os.path.join(self.path, "cgroup.events")).get("populated", 0) == 1

    def kill(self) -> None:
        """cgroup.kill (Linux 5.14): the kernel SIGKILLs every task, and new forks fail, in one
        write; stopped and signal-ignoring tasks die too. Then wait until the group is empty."""
        kill_file = os.path.join(self.path, "cgroup.kill")
        deadline = time.monotonic() + TEARDOWN_TIMEOUT_S
        while self._populated():
            try:
                _write(kill_file, "1")
            except FileNotFoundError:
                # Older than 5.14: freeze, kill each, thaw; same loop as v1.
                freeze = os.path.join(self.path, "cgroup.freeze")
                _write(freeze, "1")
                _kill_pids(self.pids())
                _write(freeze, "0")
            if time.monotonic() > deadline:
                raise CgroupTeardownError(self.path, errno.EBUSY,
                                          f"still populated after SIGKILL: pids {self.pids()[:10]}")
            time.sleep(0.0002)

    def destroy(self) -> None:
        if self._destroyed:
            return
        # rmdir first: it succeeds on an empty cgroup and fails with EBUSY otherwise, and then
        # cgroup.kill runs between retries.
        _rmdir_until_gone(self.path, time.monotonic() + TEARDOWN_TIMEOUT_S, self._kill_quietly)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._destroyed = True

    def freeze(self) -> None:
        # cgroup.freeze (Linux 5.2); cgroup.events says "frozen 1" once every task has
        # stopped (Documentation/admin-guide/cgroup-v2.rst, cgroup.freeze).
        f = os.path.join(self.path, "cgroup.freeze")
        _setup("cgroup v2 cgroup.freeze", f, _write, f, "1")
        events = os.path.join(self.path, "cgroup.events")
        _wait_frozen(f, lambda: _read_keyed(events).get("frozen", 0) == 1, self.thaw)

    def thaw(self) -> None:
        f = os.path.join(self.path, "cgroup.freeze")
        _setup("cgroup v2 cgroup.freeze", f, _write, f, "0")

    def frozen(self) -> bool:
        return _read_int(os.path.join(self.path, "cgroup.freeze")) == 1

    def memory_usage(self) -> int | None:
        return _read_int(os.path.join(self.path, "memory.current"))

    def reclaim(self) -> int:
        before = self.memory_usage() or 0
        # memory.reclaim (Linux 5.19): reclaim up to the amount written; EAGAIN when less
        # could go, which is the usual answer for a group of live processes without swap.
        f = os.path.join(self.path, "memory.reclaim")
        try:
            _write(f, str(before))
        except OSError:
            pass  # EAGAIN: it reclaimed what it could; ENOENT: older kernel, nothing to do
        return max(0, before - (self.memory_usage() or 0))

    def _kill_quietly(self) -> None:
        try:
            _write(os.path.join(self.path, "cgroup.kill"), "1")
        except FileNotFoundError:
            _kill_pids(self.pids())


class V2Driver(CgroupDriver):
    """cgroup v2. Delegation follows the kernel's rules (Documentation/admin-guide/cgroup-v2.rst,
    "No Internal Process Constraint"): a non-root cgroup can hand controllers to its children
    only while it holds no processes. So:

    * in the root cgroup, warden enables the controllers in the root's subtree_control and puts
      its parent directly below;
    * in any other cgroup B (a systemd unit with Delegate=yes, a container), warden first moves
      itself into a leaf ``B/warden-self-<pid>-<start>`` it creates, then enables the
      controllers in B's subtree_control. That fails closed with a clear error when B holds
      processes that are not warden's, because moving other programs is not warden's call.
      A warden process that already runs in such a leaf (a child of another warden) uses B.
    """

    version = 2
    WANTED = ("memory", "pids", "cpu")

    def __init__(self, mountpoint: str, own_rel: str,
                 controllers: tuple[str, ...] = WANTED) -> None:
        super().__init__()
        self.mountpoint = mountpoint
        self.own_rel = own_rel
        self._wanted = tuple(controllers)
        own = os.path.normpath(mountpoint + own_rel)
        if _OWNER_RE.match(os.path.basename(own)) and os.path.basename(own).startswith(
                "warden-self-"):
            own = os.path.dirname(own)
        self.base = own
        self._parent: str | None = None
        self._enabled: frozenset[str] = frozenset()
        self._self_leaf: str | None = None
        self._swap_file: bool | None = None

    # The parent is made on first use, not at detection: `warden doctor` must not move the
    # calling process around.
    def _ensure_parent(self) -> str:
        if self._parent is not None:
            return self._parent
        with self._lock:
            if self._parent is not None:
                return self._parent
            avail = set(_read(os.path.join(self.base, "cgroup.controllers")).split())
            want = [c for c in self._wanted if c in avail]
            self._enable_in_base(want)
            parent = os.path.join(self.base, self._owner)
            try:
                os.mkdir(parent, 0o755)
            except FileExistsError:
                pass
            except OSError as exc:
                raise SandboxSetupError("cgroup v2 mkdir parent", exc.errno or errno.EIO,
                                        parent) from exc
            pavail = set(_read(os.path.join(parent, "cgroup.controllers")).split())
            enable = [c for c in want if c in pavail]
            if enable:
                sc = os.path.join(parent, "cgroup.subtree_control")
                _setup("cgroup v2 subtree_control", sc, _write, sc,
                       " ".join("+" + c for c in enable))
            self._enabled = frozenset(enable)
            self._parent = parent
            return parent

    def _enable_in_base(self, want: list[str]) -> None:
        sc_path = os.path.join(self.base, "cgroup.subtree_control")
        have = set(_read(sc_path).split())
        missing = [c for c in want if c not in have]
        if not missing:
            return
        is_root = os.path.normpath(self.base) == os.path.normpath(self.mountpoint)
        if not is_root:
            self._move_self_to_leaf()
        try:
            _write(sc_path, " ".join("+" + c for c in missing))
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                others = _read_pids(os.path.join(self.base, "cgroup.procs"))
                raise ProviderUnavailable(
                    f"cgroup v2 controllers {missing} below {self.base}",
                    f"that cgroup still holds processes {others[:10]} that are not warden's, and "
                    "the kernel lets a non-root cgroup hand controllers down only while it holds "
                    "no processes; run warden in a cgroup of its own (e.g. `systemd-run --scope "
                    "-p Delegate=yes ...`)") from exc
            raise SandboxSetupError("cgroup v2 subtree_control", exc.errno or errno.EIO,
                                    f"{sc_path}: +{' +'.join(missing)}") from exc

    def _move_self_to_leaf(self) -> None:
        leaf = os.path.join(self.base, self._owner.replace("warden-", "warden-self-", 1))
        _setup("cgroup v2 mkdir self leaf", leaf, os.makedirs, leaf, 0o755, True)
        procs = os.path.join(leaf, "cgroup.procs")
        # "0" means the writing process; the kernel moves the whole thread group.
        _setup("cgroup v2 move self", procs, _write, procs, "0")
        # warden's own children started before this (a zygote, a helper) go along; any other
        # process is left where it is, and the subtree_control write then says so.
        for pid in _read_pids(os.path.join(self.base, "cgroup.procs")):
            if _is_descendant(pid, os.getpid()):
                try:
                    _write(procs, str(pid))
                except ProcessLookupError:
                    pass  # it exited meanwhile: nothing to move
        self._self_leaf = leaf

    def create(self, memory_bytes: int | None, pids: int | None,
               cpus: float | None, *, freezer: bool = True) -> SandboxCgroup:
        parent = self._ensure_parent()
        asked = {"memory": bool(memory_bytes), "pids": bool(pids), "cpu": bool(cpus)}
        for ctl, want in asked.items():
            if want and ctl not in self._enabled:
                raise ProviderUnavailable(
                    f"the cgroup v2 {ctl} controller below {self.base}",
                    f"a {ctl} limit was asked for but {ctl} is not in cgroup.controllers there "
                    "(the parent has not delegated it); nothing was run")
        leaf = os.path.join(parent, self._leaf_name())
        _setup("cgroup v2 mkdir", leaf, os.mkdir, leaf, 0o755)
        fd = -1
        try:
            if memory_bytes:
                f = os.path.join(leaf, "memory.max")
                _setup("cgroup v2 memory.max", f, _write, f, str(int(memory_bytes)))
                sw = os.path.join(leaf, "memory.swap.max")
                if self._swap_file is None:
                    self._swap_file = os.path.exists(sw)
                if self._swap_file:
                    _setup("cgroup v2 memory.swap.max", sw, _write, sw, "0")
                elif _swap_enabled():
                    raise ProviderUnavailable(
                        "a swap limit (memory.swap.max)",
                        "swap is on but this kernel does not account it per cgroup "
                        "(boot with swapaccount=1 or turn swap off); nothing was run")
                og = os.path.join(leaf, "memory.oom.group")
                # One OOM kill takes the whole sandbox: no half-dead process tree.
                _setup("cgroup v2 memory.oom.group", og, _write, og, "1")
            if pids:
                f = os.path.join(leaf, "pids.max")
                _setup("cgroup v2 pids.max", f, _write, f, str(int(pids)))
            if cpus:
                f = os.path.join(leaf, "cpu.max")
                _setup("cgroup v2 cpu.max", f, _write, f,
                       f"{cpu_quota_us(cpus)} {CPU_PERIOD_US}")
            fd = _setup("cgroup v2 open dir", leaf, os.open, leaf,
                        os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            try:
                os.rmdir(leaf)
            except OSError:
                pass  # set-up already failed; that error is the one to report
            raise
        return V2Cgroup(leaf, fd)

    def describe(self) -> dict:
        avail = sorted(_read(os.path.join(self.base, "cgroup.controllers")).split())
        subtree = sorted(_read(os.path.join(self.base, "cgroup.subtree_control")).split())
        is_root = os.path.normpath(self.base) == os.path.normpath(self.mountpoint)
        procs = _read_pids(os.path.join(self.base, "cgroup.procs"))
        writable, probe_err = True, ""
        probe = os.path.join(self.base, f"warden-probe-{os.getpid()}")
        try:
            os.mkdir(probe)
            os.rmdir(probe)
        except OSError as exc:
            writable, probe_err = False, f"mkdir {probe}: {os.strerror(exc.errno or 0)}"
        if writable and not os.access(os.path.join(self.base, "cgroup.subtree_control"),
                                      os.W_OK):
            writable, probe_err = False, f"{self.base}/cgroup.subtree_control is not writable"
        missing = [c for c in self.WANTED if c not in avail]
        # Delegation is usable when warden can create below its cgroup and hand the
        # controllers down: already enabled, or the root, or only warden's own process here.
        can_enable = (all(c in subtree for c in self.WANTED if c in avail) or is_root
                      or all(p == os.getpid() or _is_descendant(p, os.getpid()) for p in procs))
        return {
            "version": 2,
            "controllers": avail,
            "missing_controllers": missing,
            "mounts": {"unified": self.mountpoint},
            "parents": {"unified": self.base},
            "subtree_control": subtree,
            "swap_limit": os.path.exists(os.path.join(self.base, "memory.swap.max")) or is_root,
            "kill": "cgroup.kill" if os.path.exists(os.path.join(self.mountpoint, "cgroup.kill"))
            or _kernel_at_least(5, 14) else "freeze + signal loop",
            "pause": "cgroup.freeze" if _kernel_at_least(5, 2) else "unavailable",
            "delegation_ok": bool(writable and can_enable and not missing),
            "delegation_error": probe_err or (
                "" if can_enable else
                f"{self.base} holds processes {procs[:10]} that are not warden's, so it cannot "
                "hand controllers down; run warden in a cgroup of its own") or (
                f"controllers {missing} are not delegated to {self.base}" if missing else ""),
        }

    def sweep(self) -> list[str]:
        removed = _sweep_base(self.base)
        return removed

    def close(self) -> None:
        if self._parent is not None:
            _remove_parent(self._parent)
            self._parent = None


