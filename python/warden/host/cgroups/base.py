"""What every cgroup driver shares: the interface (SandboxCgroup, CgroupDriver, CgroupStats),
the pure parsing of /proc texts, and small file helpers."""

from __future__ import annotations

import errno
import itertools
import os
import re
import signal
import threading
import time
from dataclasses import dataclass

from warden.errors import CgroupTeardownError, ProviderUnavailable, SandboxSetupError
from warden.host.owner import alive, proc_starttime

# cpu.max / cpu.cfs_period_us: the kernel's default period; quota is cpus times it.
CPU_PERIOD_US = 100_000
# The kernel refuses a quota below 1 ms (kernel/sched/core.c, min_cfs_quota_period).
_MIN_QUOTA_US = 1_000
# How long destroy() may wait for the kernel to empty a cgroup before it gives up and says so.
TEARDOWN_TIMEOUT_S = 5.0
# How long freeze() waits for every task to stop (a task in uninterruptible sleep, e.g. on a
# slow disk, holds the group in FREEZING) before it thaws the group again and says so.
FREEZE_TIMEOUT_S = 2.0

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
    out: dict[str, int] = {}
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


def _reset_peak(path: str, reset: bytes) -> PeakWindow | None:
    """Open a peak file for reading and writing and write ``reset`` to it: a PeakWindow, or
    None when the kernel refuses (no such file, or a read-only one: v2 before Linux 6.12)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        os.write(fd, reset)
    except OSError:
        os.close(fd)
        return None
    return PeakWindow(fd)


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
    """The cgroup's counters at one moment: over its whole life, or, from :meth:`since`, over
    the time between two readings (one command in a long-lived sandbox)."""

    oom_kills: int              # v1: memory.oom_control oom_kill; v2: memory.events oom_kill
    memory_limit_hit: bool      # the memory limit was reached (v1 failcnt > 0, v2 max > 0)
    pids_limit_hit: bool        # pids.events max > 0
    peak_memory_bytes: int      # v1 memory.max_usage_in_bytes; v2 memory.peak (0 if absent)
    cpu_usage_ns: int | None    # cpuacct.usage (v1, when cpuacct shares cpu's hierarchy) or
                                # cpu.stat usage_usec (v2)
    memory_max_events: int = 0  # the count behind memory_limit_hit: v1 failcnt (+ memsw),
                                # v2 memory.events max + oom
    pids_max_events: int = 0    # the count behind pids_limit_hit: pids.events max

    def since(self, before: CgroupStats) -> CgroupStats:
        """What happened between ``before`` and this reading: counts are differences and the
        flags say whether a limit was reached in between. A peak cannot be subtracted: it is
        this reading's, over the cgroup's life (SandboxCgroup.peak_window gives one command's
        where the kernel can)."""
        oom = max(0, self.oom_kills - before.oom_kills)
        mem = max(0, self.memory_max_events - before.memory_max_events)
        pids = max(0, self.pids_max_events - before.pids_max_events)
        cpu = (None if self.cpu_usage_ns is None or before.cpu_usage_ns is None
               else max(0, self.cpu_usage_ns - before.cpu_usage_ns))
        return CgroupStats(oom_kills=oom, memory_limit_hit=mem > 0 or oom > 0,
                           pids_limit_hit=pids > 0, peak_memory_bytes=self.peak_memory_bytes,
                           cpu_usage_ns=cpu, memory_max_events=mem, pids_max_events=pids)


class PeakWindow:
    """The cgroup's memory peak from the moment this was made (``read``), where the kernel can
    reset the peak: v1 memory.max_usage_in_bytes (reset by writing 0), v2 memory.peak (Linux
    6.12: a write resets it for reads through the same open file)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd  # the peak file, open for reading and writing; owned

    def finish(self) -> int | None:
        """The peak since the window opened (None if it cannot be read); closes the window."""
        try:
            return int(os.pread(self._fd, 64, 0).split()[0])
        except (OSError, ValueError, IndexError):
            return None
        finally:
            os.close(self._fd)


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

    def peak_window(self) -> PeakWindow | None:
        """Start measuring the memory peak of what runs from now on; None where the kernel
        cannot reset the peak (then only the peak over the cgroup's life is known)."""
        return None

    def kill(self) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    # Freezing: every task stops where it is (no CPU, signals but SIGKILL held on v1) until
    # thawed. Only warden (root on the host) can write the freezer file of a sandbox's cgroup.

    def freeze(self) -> None:
        """Stop every task in the cgroup and wait until each has stopped. A group that does
        not reach the frozen state within FREEZE_TIMEOUT_S is thawed again and the failure
        raised (SandboxSetupError, step "freeze"): never half frozen."""
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def frozen(self) -> bool:
        """Whether the cgroup is (being) frozen now, as the kernel reports it."""
        raise NotImplementedError

    def memory_usage(self) -> int | None:
        """The memory charged to the cgroup now, in bytes (None without a memory controller)."""
        raise NotImplementedError

    def reclaim(self) -> int:
        """Ask the kernel to reclaim what it can of the cgroup's memory now, leaving its
        processes alive: page cache and reclaimable kernel objects; anonymous memory only
        where there is swap. Returns the bytes the charge went down by (0 when none)."""
        raise NotImplementedError


def _wait_frozen(path: str, done, undo) -> None:
    """Poll (``done``) until the group at ``path`` is frozen; else ``undo`` and raise."""
    deadline = time.monotonic() + FREEZE_TIMEOUT_S
    delay = 0.0001
    while not done():
        if time.monotonic() > deadline:
            undo()
            raise ProviderUnavailable(
                f"a freeze of cgroup {path}",
                f"a task did not stop within {FREEZE_TIMEOUT_S:g}s (uninterruptible sleep, "
                "e.g. on a slow disk); the sandbox was thawed again and runs on; retry later")
        time.sleep(delay)
        delay = min(delay * 2, 0.005)


class CgroupDriver:
    version: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = f"warden-{os.getpid()}-{proc_starttime(os.getpid())}"

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
        if not m or alive(int(m.group(1)), int(m.group(2))):
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
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)
