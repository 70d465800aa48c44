"""The v1 driver, for hybrid hosts: one hierarchy per controller (or a few co-mounted), through
cgroupspy."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass

from cgroupspy.controllers import CpuAcctController, MemoryController
from cgroupspy.nodes import Node

from warden.errors import CgroupTeardownError, ProviderUnavailable, SandboxSetupError
from warden.host.cgroups.base import (
    _CONTROLLERS_V1,
    TEARDOWN_TIMEOUT_S,
    CgroupDriver,
    CgroupStats,
    PeakWindow,
    SandboxCgroup,
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
# v1: one hierarchy per controller (or a few co-mounted), through cgroupspy.


@dataclass
class _Hierarchy:
    controllers: frozenset[str]
    mountpoint: str
    own: str            # the directory of the cgroup this process runs in

    @property
    def key(self) -> str:
        return ",".join(sorted(self.controllers))


class V1Cgroup(SandboxCgroup):
    def __init__(self, dirs: dict[str, str], path: str, cpu_acct: bool) -> None:
        # dirs: controller -> directory; co-mounted controllers share one directory.
        self._dirs = dirs
        self._unique = list(dict.fromkeys(dirs.values()))
        self.path = path
        self._cpu_acct = cpu_acct
        self._destroyed = False
        # cgroupspy's Controller objects only need a node with a full_path; a Node without
        # a parent is that node, with no walk of the hierarchy (building a Tree is far too slow
        # for the hot path).
        self._memory = MemoryController(Node(dirs["memory"])) if "memory" in dirs else None
        self._cpuacct = (CpuAcctController(Node(dirs["cpuacct"]))
                         if cpu_acct and "cpuacct" in dirs else None)

    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self._unique]

    def dir_fd(self) -> int | None:
        return None

    def pids(self) -> list[int]:
        seen: dict[int, None] = {}
        for d in self._unique:
            for p in _read_pids(os.path.join(d, "cgroup.procs")):
                seen[p] = None
        return list(seen)

    def stats(self) -> CgroupStats:
        oom_kills = failures = 0
        peak = 0
        if self._memory is not None:
            d = self._dirs["memory"]
            oom_kills = _read_keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0)
            failures = ((_read_int(os.path.join(d, "memory.failcnt")) or 0)
                        + (_read_int(os.path.join(d, "memory.memsw.failcnt")) or 0))
            peak = self._memory.max_usage_in_bytes
        pids_max = 0
        if "pids" in self._dirs:
            pids_max = _read_keyed(os.path.join(self._dirs["pids"], "pids.events")).get("max", 0)
        cpu_ns = self._cpuacct.usage if self._cpuacct is not None else None
        return CgroupStats(oom_kills=oom_kills, memory_limit_hit=failures > 0 or oom_kills > 0,
                           pids_limit_hit=pids_max > 0, peak_memory_bytes=int(peak),
                           cpu_usage_ns=cpu_ns, memory_max_events=failures,
                           pids_max_events=pids_max)

    def peak_window(self) -> PeakWindow | None:
        # Writing 0 to memory.max_usage_in_bytes resets it to the current usage
        # (Documentation/admin-guide/cgroup-v1/memory.rst, 5.4). The peak is then this
        # window's until the next reset: one request at a time holds a sandbox, so there is
        # none in between.
        if "memory" not in self._dirs:
            return None
        return _reset_peak(os.path.join(self._dirs["memory"], "memory.max_usage_in_bytes"),
                           b"0")

    def kill(self) -> None:
        """SIGKILL everything in it. With a freezer cgroup, the group is frozen first so that
        nothing forks between the read of cgroup.procs and the kills (a fork bomb would
        otherwise outrun the loop); frozen and stopped tasks die as soon as they are thawed."""
        deadline = time.monotonic() + TEARDOWN_TIMEOUT_S
        freezer = self._dirs.get("freezer")
        if freezer is not None and not os.path.isdir(freezer):
            freezer = None  # destroy() already removed it (empty), the signal loop remains
        while True:
            pids = self.pids()
            if not pids:
                return
            if freezer is not None:
                state = os.path.join(freezer, "freezer.state")
                _write(state, "FROZEN")
                # FREEZING until every task has stopped; a task can race in between.
                t_end = time.monotonic() + 0.5
                while _read(state).strip() != "FROZEN" and time.monotonic() < t_end:
                    time.sleep(0.0002)
                _kill_pids(self.pids())
                _write(state, "THAWED")
            else:
                _kill_pids(pids)
            if time.monotonic() > deadline:
                raise CgroupTeardownError(self.path, errno.EBUSY,
                                          f"still holds pids {self.pids()[:10]} after SIGKILL")
            time.sleep(0.0002)

    def destroy(self) -> None:
        if self._destroyed:
            return
        # rmdir of an empty cgroup is the common case and fails with EBUSY otherwise, so it is
        # tried first; the freezer-kill runs only when something is still inside.
        deadline = time.monotonic() + TEARDOWN_TIMEOUT_S
        for d in self._unique:
            _rmdir_until_gone(d, deadline, self._kill_busy)
        self._destroyed = True

    def _kill_busy(self) -> None:
        self.kill()

    def _freezer_state(self) -> str:
        d = self._dirs.get("freezer")
        if d is None:
            raise ProviderUnavailable(
                "pausing a sandbox (the cgroup v1 freezer controller)",
                "this sandbox's cgroup has no freezer hierarchy: mount the freezer controller "
                "(see `warden doctor`)")
        return os.path.join(d, "freezer.state")

    def freeze(self) -> None:
        state = self._freezer_state()
        _setup("cgroup v1 freezer.state", state, _write, state, "FROZEN")
        # FREEZING until every task has stopped (Documentation/admin-guide/cgroup-v1/
        # freezer-subsystem.rst); a task that forks meanwhile is frozen with its parent.
        _wait_frozen(state, lambda: _read(state).strip() == "FROZEN", self.thaw)

    def thaw(self) -> None:
        state = self._freezer_state()
        _setup("cgroup v1 freezer.state", state, _write, state, "THAWED")

    def frozen(self) -> bool:
        d = self._dirs.get("freezer")
        return d is not None and _read(os.path.join(d, "freezer.state")).strip() != "THAWED"

    def memory_usage(self) -> int | None:
        d = self._dirs.get("memory")
        return None if d is None else _read_int(os.path.join(d, "memory.usage_in_bytes"))

    def reclaim(self) -> int:
        d = self._dirs.get("memory")
        if d is None:
            return 0
        before = self.memory_usage() or 0
        # force_empty reclaims as much as it can and leaves the tasks where they are
        # (memory.rst 5.1; it gives up after a few rounds that free nothing): page cache and
        # reclaimable slab go, anonymous memory stays unless there is swap.
        force = os.path.join(d, "memory.force_empty")
        try:
            _write(force, "0")
        except OSError:
            return 0  # EBUSY/EINTR: nothing more could go; the pause itself stands
        return max(0, before - (self.memory_usage() or 0))



class V1Driver(CgroupDriver):
    """cgroup v1 (hybrid hosts). Controllers: memory, pids, cpu (each optional per request),
    freezer (for a race-free kill, when mounted), cpuacct (only when it shares cpu's hierarchy:
    a separate hierarchy would cost a mkdir/rmdir per run for a figure rusage already gives)."""

    version = 1

    def __init__(self, hierarchies: dict[str, _Hierarchy]) -> None:
        super().__init__()
        self._h = hierarchies          # controller -> hierarchy
        self._parents: dict[str, str] = {}   # hierarchy key -> our parent dir (created lazily)
        self._cpu_acct = ("cpu" in hierarchies and "cpuacct" in hierarchies
                          and hierarchies["cpu"].mountpoint == hierarchies["cpuacct"].mountpoint)
        self._swap_limit: bool | None = None  # memsw files present? found on first create

    @property
    def hierarchies(self) -> dict[str, _Hierarchy]:
        return dict(self._h)

    def _parent(self, h: _Hierarchy) -> str:
        p = self._parents.get(h.key)
        if p is not None:
            return p
        with self._lock:
            p = self._parents.get(h.key)
            if p is None:
                p = os.path.join(h.own, self._owner)
                try:
                    os.mkdir(p, 0o755)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise SandboxSetupError(f"cgroup v1 mkdir parent ({h.key})",
                                            exc.errno or errno.EIO, p) from exc
                self._parents[h.key] = p
        return p

    def create(self, memory_bytes: int | None, pids: int | None,
               cpus: float | None, *, freezer: bool = True) -> SandboxCgroup:
        wanted = {"memory": bool(memory_bytes), "pids": bool(pids), "cpu": bool(cpus)}
        for ctl, asked in wanted.items():
            if asked and ctl not in self._h:
                raise ProviderUnavailable(
                    f"the cgroup v1 {ctl} controller",
                    f"a {ctl} limit was asked for but no {ctl} hierarchy is mounted "
                    "(see `warden doctor`); nothing was run")
        ctls = [c for c, asked in wanted.items() if asked]
        if freezer and "freezer" in self._h:
            ctls.append("freezer")
        if self._cpu_acct and "cpu" not in ctls:
            ctls.append("cpu")
        if not ctls:
            ctls = ["pids" if "pids" in self._h else next(iter(self._h))]
        leaf = self._leaf_name()
        dirs: dict[str, str] = {}
        made: list[str] = []
        try:
            for ctl in ctls:
                h = self._h[ctl]
                d = os.path.join(self._parent(h), leaf)
                for c in h.controllers & set(_CONTROLLERS_V1):
                    if c in self._h and self._h[c].key == h.key:
                        dirs.setdefault(c, d)
                if d in made:
                    continue
                _setup("cgroup v1 mkdir", d, os.mkdir, d, 0o755)
                made.append(d)
            cg = V1Cgroup(dirs, dirs.get("memory") or made[0], self._cpu_acct)
            if memory_bytes:
                self._limit_memory(dirs["memory"], memory_bytes)
            if pids:
                p = os.path.join(dirs["pids"], "pids.max")
                _setup("cgroup v1 pids.max", p, _write, p, str(int(pids)))
            if cpus:
                # A new cgroup starts with the kernel's default period (100 ms, which is
                # CPU_PERIOD_US), so only the quota is written.
                q = os.path.join(dirs["cpu"], "cpu.cfs_quota_us")
                _setup("cgroup v1 cpu.cfs_quota_us", q, _write, q, str(cpu_quota_us(cpus)))
        except BaseException:
            for d in reversed(made):
                try:
                    os.rmdir(d)
                except OSError:
                    pass  # set-up already failed; that error is the one to report
            raise
        return cg

    # The limit writes below go straight to os.open/os.write rather than through cgroupspy's
    # Controller attributes: those open a buffered text file per write, 2.5x the cost of one
    # write(2) (bench/cgroups.py measures both), on the path every run takes.
    def _limit_memory(self, d: str, memory_bytes: int) -> None:
        limit = os.path.join(d, "memory.limit_in_bytes")
        # limit_in_bytes first: the kernel refuses a memsw limit below the memory limit.
        _setup("cgroup v1 memory.limit_in_bytes", limit, _write, limit, str(int(memory_bytes)))
        self._limit_socket_memory(d, memory_bytes)
        memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
        if self._swap_limit is None:
            self._swap_limit = os.path.exists(memsw)
        if self._swap_limit:
            # memory+swap == memory: the sandbox cannot push anything out to swap.
            _setup("cgroup v1 memory.memsw.limit_in_bytes", memsw, _write, memsw,
                   str(int(memory_bytes)))
        elif _swap_enabled():
            # swappiness=0 only asks the kernel not to swap this cgroup: it still may, and
            # the memory limit would then not bound what the sandbox holds.
            raise ProviderUnavailable(
                "a swap limit (memory.memsw.limit_in_bytes)",
                "swap is on but this kernel does not account it per cgroup (boot with "
                "swapaccount=1 or turn swap off); nothing was run")
        else:
            # No swap on this host and no swap accounting: nothing can be swapped out, and
            # swappiness=0 keeps it so should swap be turned on while the sandbox runs.
            sw = os.path.join(d, "memory.swappiness")
            _setup("cgroup v1 memory.swappiness", sw, _write, sw, "0")

    def _limit_socket_memory(self, d: str, memory_bytes: int) -> None:
        # v1 charges TCP buffers to a cgroup only once its tcp limit has been written
        # (memcg1 tcpmem_active); until then a sandbox's unread connections pin kernel memory
        # that no limit of its own bounds, up to the host-wide net.ipv4.tcp_mem. The counter
        # is separate from memory.usage_in_bytes: a v1 sandbox may hold its memory limit in
        # pages and as much again in TCP buffers, never more. (v2 charges sockets to
        # memory.current by default.)
        tcp = os.path.join(d, "memory.kmem.tcp.limit_in_bytes")
        if not os.path.exists(tcp):
            raise ProviderUnavailable(
                "TCP buffer accounting (memory.kmem.tcp.limit_in_bytes)",
                "this kernel's v1 memory controller cannot charge socket buffers to a "
                "sandbox, which could then pin host memory beyond its limit; use a cgroup v2 "
                "host or a kernel with CONFIG_MEMCG_KMEM; nothing was run")
        _setup("cgroup v1 memory.kmem.tcp.limit_in_bytes", tcp, _write, tcp,
               str(int(memory_bytes)))

    def describe(self) -> dict:
        probe_ok, probe_err = True, ""
        for key, h in {h.key: h for h in self._h.values()}.items():
            p = os.path.join(h.own, f"warden-probe-{os.getpid()}")
            try:
                os.mkdir(p)
                os.rmdir(p)
            except OSError as exc:
                probe_ok, probe_err = False, f"{key}: mkdir {p}: {os.strerror(exc.errno or 0)}"
                break
        return {
            "version": 1,
            "controllers": sorted(self._h),
            "mounts": {c: h.mountpoint for c, h in sorted(self._h.items())},
            "parents": {c: h.own for c, h in sorted(self._h.items())},
            "swap_limit": os.path.exists(os.path.join(self._h["memory"].own,
                                                      "memory.memsw.limit_in_bytes"))
            if "memory" in self._h else False,
            "kill": "freezer" if "freezer" in self._h else "signal loop",
            "pause": "freezer" if "freezer" in self._h else "unavailable",
            "delegation_ok": probe_ok,
            "delegation_error": probe_err,
        }

    def sweep(self) -> list[str]:
        removed: list[str] = []
        for own in sorted({h.own for h in self._h.values()}):
            removed += _sweep_base(own)
        return removed

    def close(self) -> None:
        for p in self._parents.values():
            _remove_parent(p)
        self._parents.clear()


