"""cgroups: one interface, two drivers (v2 files, v1 through cgroupspy), detected at start.

Where warden's cgroups live
    Below the cgroup the current process already runs in, per hierarchy, as read from
    ``/proc/self/cgroup``; never at a hierarchy's root unless warden itself runs there. Each
    warden process owns one parent per hierarchy, named ``warden-<pid>-<starttime>``, and every
    sandbox gets a leaf ``sb-<n>`` below it::

        <own cgroup>/warden-<pid>-<starttime>/sb-<n>

    The start time (field 22 of /proc/<pid>/stat) makes the name unique even after the pid is
    reused, so :meth:`CgroupDriver.sweep` can tell a crashed owner's leftovers from a live
    process's parent. warden never removes or writes to a cgroup it did not create, with one
    exception on v2 that delegation requires: enabling controllers in the ``subtree_control`` of
    the cgroup it runs in (see :class:`V2Driver`).

Hot path
    Creating and destroying one sandbox cgroup happens on every run, so the per-sandbox work is
    a handful of mkdir/open/write/rmdir calls on files warden owns; ``bench/cgroups.py`` measures
    it.
"""

from __future__ import annotations

import atexit
import errno
import itertools
import os
import re
import signal
import threading
import time
from dataclasses import dataclass

from cgroupspy.controllers import CpuAcctController, MemoryController
from cgroupspy.nodes import Node

from warden.errors import CgroupTeardownError, ProviderUnavailable, SandboxSetupError

__all__ = [
    "CgroupDriver",
    "CgroupStats",
    "SandboxCgroup",
    "V1Driver",
    "V2Driver",
    "cpu_quota_us",
    "driver",
    "parse_mountinfo",
    "parse_proc_cgroup",
]

# cpu.max / cpu.cfs_period_us: the kernel's default period; quota is cpus times it.
CPU_PERIOD_US = 100_000
# The kernel refuses a quota below 1 ms (kernel/sched/core.c, min_cfs_quota_period).
_MIN_QUOTA_US = 1_000
# How long destroy() may wait for the kernel to empty a cgroup before it gives up and says so.
TEARDOWN_TIMEOUT_S = 5.0

_SEQ = itertools.count(1)
_OWNER_RE = re.compile(r"^warden-(?:self-)?(\d+)-(\d+)$")
_CONTROLLERS_V1 = ("memory", "pids", "cpu", "cpuacct", "freezer")


# ----------------------------------------------------------------------------------------------
# Pure parsing: no syscalls, unit-tested.


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each controller (and ``""`` for the v2 hierarchy, ``name=x`` for named ones) to the
    path of the cgroup the process is in, from the text of ``/proc/<pid>/cgroup``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        _hid, ctrls, path = line.split(":", 2)
        if ctrls == "":
            out[""] = path
            continue
        for c in ctrls.split(","):
            out[c] = path
    return out


@dataclass(frozen=True)
class Mount:
    mountpoint: str
    root: str
    fstype: str
    options: frozenset[str]  # super options: for cgroup v1, the controllers of the hierarchy


def _unescape_mountinfo(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal (fs/proc_namespace.c).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts listed in the text of ``/proc/<pid>/mountinfo``."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype = rfields[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mounts.append(Mount(
            mountpoint=_unescape_mountinfo(fields[4]),
            root=_unescape_mountinfo(fields[3]),
            fstype=fstype,
            options=frozenset(rfields[2].split(",")),
        ))
    return mounts


def cpu_quota_us(cpus: float, period_us: int = CPU_PERIOD_US) -> int:
    """The CFS quota, in µs per period, that lets a group use ``cpus`` CPUs."""
    return max(_MIN_QUOTA_US, round(cpus * period_us))


def _proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(b")") + 2:].split()
    return int(rest[19])


def _owner_alive(pid: int, starttime: int) -> bool:
    return _proc_starttime(pid) == starttime


# ----------------------------------------------------------------------------------------------
# Small file helpers. Direct os.open/os.write: one syscall each, no buffering, and the OSError
# carries the errno that the caller turns into a SandboxSetupError naming the file.


def _write(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def _read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed cgroup file ("key value" per line) such as memory.events or pids.events."""
    out = {}
    try:
        text = _read(path)
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def _read_int(path: str) -> int | None:
    try:
        return int(_read(path).strip())
    except FileNotFoundError:
        return None


def _read_pids(path: str) -> list[int]:
    try:
        return [int(x) for x in _read(path).split()]
    except FileNotFoundError:
        return []


def _setup(step: str, path: str, fn, *args):
    """Run one set-up syscall; turn its OSError into the error users see."""
    try:
        return fn(*args)
    except OSError as exc:
        raise SandboxSetupError(step, exc.errno or errno.EIO, path) from exc


def _kill_pids(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # exited between the read of cgroup.procs and the kill: what we wanted


def _rmdir_until_gone(path: str, deadline: float, on_busy) -> None:
    """rmdir a cgroup, calling ``on_busy`` (which kills what is left) while it is not empty."""
    delay = 0.0005
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise CgroupTeardownError(path, exc.errno or errno.EIO,
                                          "rmdir of the sandbox cgroup failed") from exc
            if time.monotonic() > deadline:
                raise CgroupTeardownError(
                    path, exc.errno,
                    f"processes still in it after {TEARDOWN_TIMEOUT_S:.0f}s of SIGKILL "
                    "(a process in uninterruptible sleep, or an unreaped child of the caller); "
                    "it is left for `warden doctor`/sweep() to remove later") from exc
        on_busy()
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


# ----------------------------------------------------------------------------------------------
# The interface.


@dataclass(frozen=True)
class CgroupStats:
    oom_kills: int              # v1: memory.oom_control oom_kill; v2: memory.events oom_kill
    memory_limit_hit: bool      # the memory limit was reached (v1 failcnt > 0, v2 max > 0)
    pids_limit_hit: bool        # pids.events max > 0
    peak_memory_bytes: int      # v1 memory.max_usage_in_bytes; v2 memory.peak (0 if absent)
    cpu_usage_ns: int | None    # cpuacct.usage (v1, when cpuacct shares cpu's hierarchy) or
                                # cpu.stat usage_usec (v2)


class SandboxCgroup:
    """One sandbox's cgroup (one directory per v1 hierarchy, or one v2 directory)."""

    path: str

    def procs_files(self) -> list[str]:
        raise NotImplementedError

    def dir_fd(self) -> int | None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """The processes in it now (host pids)."""
        raise NotImplementedError

    def attach(self, pid: int) -> None:
        """Move a running process in by writing its pid (v1: into every hierarchy). The spawner
        places its child before it runs anything (v1 procs files, v2 CLONE_INTO_CGROUP); this is
        for the rest: tests, and hosts without clone3."""
        files = self.procs_files() or [os.path.join(self.path, "cgroup.procs")]
        for f in files:
            _setup("cgroup attach", f, _write, f, str(pid))

    def stats(self) -> CgroupStats:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError


class CgroupDriver:
    version: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = f"warden-{os.getpid()}-{_proc_starttime(os.getpid())}"

    def create(self, memory_bytes: int | None, pids: int | None,
               cpus: float | None, *, freezer: bool = True) -> SandboxCgroup:
        """A new sandbox cgroup. ``freezer=False`` (v1) skips the freezer hierarchy: for
        sandboxes whose processes all die with their pid namespace's init, kill() is never
        needed, and the freezer costs a mkdir, an attach and an rmdir per sandbox."""
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError

    def sweep(self) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Remove this process's (empty) parent cgroups; called at exit."""
        raise NotImplementedError

    def _leaf_name(self) -> str:
        # One counter per process, not per driver: two drivers of one process share the parent.
        return f"sb-{next(_SEQ)}"


def _remove_parent(parent: str) -> None:
    """At exit: remove this process's parent and its empty leaves (ready cgroups that a pool
    never handed out). A leaf that still holds processes stays, and so does the parent; the
    next warden's sweep() removes them once they are empty, as the owner is then dead."""
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return
    for n in names:
        if n.startswith("sb-"):
            try:
                os.rmdir(os.path.join(parent, n))
            except OSError:
                pass  # busy or gone: left for sweep(), see above
    try:
        os.rmdir(parent)
    except OSError:
        pass  # busy or gone: left for sweep(), see above


def _sweep_base(base: str) -> list[str]:
    """Remove empty warden-<pid>-<start> dirs below ``base`` whose owner is dead."""
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return removed
    for name in names:
        m = _OWNER_RE.match(name)
        if not m or _owner_alive(int(m.group(1)), int(m.group(2))):
            continue
        parent = os.path.join(base, name)
        try:
            children = [c for c in os.listdir(parent)
                        if c.startswith("sb-") and os.path.isdir(os.path.join(parent, c))]
        except FileNotFoundError:
            continue
        for c in children:
            try:
                os.rmdir(os.path.join(parent, c))
                removed.append(os.path.join(parent, c))
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOENT):
                    raise
        try:
            os.rmdir(parent)
            removed.append(parent)
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOENT):
                raise
    return removed


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
        oom_kills = 0
        mem_hit = False
        peak = 0
        if self._memory is not None:
            d = self._dirs["memory"]
            oom_kills = _read_keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0)
            failcnt = _read_int(os.path.join(d, "memory.failcnt")) or 0
            memsw_failcnt = _read_int(os.path.join(d, "memory.memsw.failcnt")) or 0
            mem_hit = failcnt > 0 or memsw_failcnt > 0 or oom_kills > 0
            peak = self._memory.max_usage_in_bytes
        pids_hit = False
        if "pids" in self._dirs:
            pids_hit = _read_keyed(os.path.join(self._dirs["pids"], "pids.events")).get("max", 0) > 0
        cpu_ns = self._cpuacct.usage if self._cpuacct is not None else None
        return CgroupStats(oom_kills=oom_kills, memory_limit_hit=mem_hit, pids_limit_hit=pids_hit,
                           peak_memory_bytes=int(peak), cpu_usage_ns=cpu_ns)

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
        self._swap_limit = None        # memsw files present? found on first create

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
        return CgroupStats(
            oom_kills=ev.get("oom_kill", 0),
            memory_limit_hit=ev.get("max", 0) > 0 or ev.get("oom", 0) > 0,
            pids_limit_hit=pev.get("max", 0) > 0,
            peak_memory_bytes=peak,
            cpu_usage_ns=usage * 1000 if usage is not None else None,
        )

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


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(data[data.rindex(b")") + 2:].split()[1])


def _is_descendant(pid: int, ancestor: int) -> bool:
    seen = 0
    while pid > 1 and seen < 4096:
        pid = _parent_pid(pid) or 0
        if pid == ancestor:
            return True
        seen += 1
    return False


def _swap_enabled() -> bool:
    try:
        with open("/proc/swaps") as f:
            return len(f.read().strip().splitlines()) > 1
    except FileNotFoundError:
        return False


def _kernel_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (major, minor)


# ----------------------------------------------------------------------------------------------
# Detection.


def _resolve(mount: Mount, path: str) -> str | None:
    """The directory of cgroup ``path`` (as /proc/self/cgroup shows it) under ``mount``."""
    root = mount.root.rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root):]
    elif root and path == root:
        path = "/"
    elif root and root != "/":
        return None  # the mount shows another part of the hierarchy
    return os.path.normpath(mount.mountpoint + "/" + path.lstrip("/"))


def detect(proc_cgroup: str, mountinfo: str) -> CgroupDriver:
    """Pick the driver from the texts of /proc/self/cgroup and /proc/self/mountinfo.

    v2 wins when the cgroup this process runs in has the memory and pids controllers there
    (pure v2 hosts, or hybrids that moved them); otherwise v1 when those are mounted as v1
    hierarchies. ``WARDEN_CGROUP`` = ``v1``/``v2`` forces one (for tests and odd hosts)."""
    own = parse_proc_cgroup(proc_cgroup)
    mounts = parse_mountinfo(mountinfo)
    force = os.environ.get("WARDEN_CGROUP", "")
    v2_mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    v2_driver = None
    v2_why = "no cgroup2 filesystem is mounted"
    if v2_mount is not None and "" in own:
        d = _resolve(v2_mount, own[""])
        if d is not None and os.path.isdir(d):
            try:
                avail = set(_read(os.path.join(d, "cgroup.controllers")).split())
            except OSError as exc:
                avail, v2_why = set(), f"cannot read {d}/cgroup.controllers: {exc.strerror}"
            if {"memory", "pids"} <= avail:
                v2_driver = V2Driver(v2_mount.mountpoint, d[len(v2_mount.mountpoint):] or "/")
            else:
                v2_why = f"the cgroup2 hierarchy has only {sorted(avail)} at {d}"
    hier: dict[str, _Hierarchy] = {}
    for m in mounts:
        if m.fstype != "cgroup":
            continue
        ctrls = frozenset(o for o in m.options if o in _CONTROLLERS_V1)
        for c in ctrls:
            if c in own and c not in hier:
                d = _resolve(m, own[c])
                if d is not None and os.path.isdir(d):
                    hier[c] = _Hierarchy(ctrls, m.mountpoint, d)
    v1_ok = {"memory", "pids"} <= set(hier)
    if force == "v2" or (force != "v1" and v2_driver is not None):
        if v2_driver is None:
            raise ProviderUnavailable("cgroup v2 with the memory and pids controllers", v2_why)
        return v2_driver
    if v1_ok:
        return V1Driver(hier)
    raise ProviderUnavailable(
        "cgroups with the memory and pids controllers",
        f"{v2_why}, and the v1 hierarchies mounted offer only {sorted(hier) or 'none'}; "
        "mount cgroup2 with those controllers delegated to warden's cgroup")


_driver: CgroupDriver | None = None
_driver_pid = -1
_driver_lock = threading.Lock()


def driver() -> CgroupDriver:
    """The cgroup driver of this host, detected once per process (a forked child detects
    again: its parent cgroup name carries the owner's pid)."""
    global _driver, _driver_pid
    pid = os.getpid()
    if _driver is not None and _driver_pid == pid:
        return _driver
    with _driver_lock:
        if _driver is None or _driver_pid != pid:
            with open("/proc/self/cgroup") as f:
                pc = f.read()
            with open("/proc/self/mountinfo") as f:
                mi = f.read()
            d = detect(pc, mi)
            # Leftovers of crashed warden processes: empty dirs only, owners checked dead.
            d.sweep()
            _driver, _driver_pid = d, pid
            atexit.register(_close_at_exit, d, pid)
    return _driver


def _close_at_exit(d: CgroupDriver, pid: int) -> None:
    if os.getpid() == pid:
        d.close()
