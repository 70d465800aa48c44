"""One command in a fresh native sandbox, torn down when it ends: the fast path behind
warden.run on the native provider."""

from __future__ import annotations

import math
import os
import signal as _signal
import sys
from functools import lru_cache, partial

from warden import _core
from warden.errors import ProviderUnavailable, SandboxSetupError
from warden.host import identity
from warden.host.cgroups import CgroupStats
from warden.host.environ import python_paths
from warden.spec.limits import Limits
from warden.spec.result import ExecResult
from warden.spec.verdict import Ending, judge

__all__ = ["INIT_PATH", "base_config", "import_roots", "make_sandbox", "run", "run_in",
           "seccomp_program", "verdict"]

# Installed beside the package's __init__ (CMake installs it into the warden directory).
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INIT_PATH = os.path.join(_PACKAGE_DIR, "warden-init")


@lru_cache(maxsize=1)
def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


@lru_cache(maxsize=4)
def seccomp_program(allow_inet: bool = False) -> bytes:
    """The compiled filter; compiled once per process (it never changes)."""
    try:
        return _core.seccomp_compile(allow_inet)
    except OSError as exc:
        raise SandboxSetupError("seccomp", exc.errno or 0, str(exc)) from exc


def _exec_candidates(argv0: str, path: str) -> list[str]:
    if "/" in argv0:
        return [argv0]
    return [os.path.join(d, argv0) for d in path.split(":") if d.startswith("/")]


def import_roots() -> list[str]:
    """Directories the worker's imports may need beyond the Python installation: the one
    holding the warden package (a source checkout in development) and the site directories
    of its dependencies."""
    import msgpack
    import yaml

    roots = set()
    for mod in (sys.modules["warden"], msgpack, yaml):
        assert mod.__file__ is not None  # all three are regular packages
        pkg_dir = os.path.dirname(os.path.abspath(mod.__file__))
        roots.add(os.path.dirname(pkg_dir))
    bound = python_paths()
    return sorted(r for r in roots
                  if not any(r == b or r.startswith(b + "/") for b in bound)
                  and not r.startswith("/usr/"))


def base_config(limits: Limits, *, network: str = "none") -> dict:
    """The parts of a native spawn config that depend only on the spec (a new dict each
    call: callers add to it)."""
    return {k: list(v) if isinstance(v, list) else v
            for k, v in _base_config(limits, network).items()}


@lru_cache(maxsize=64)
def _base_config(limits: Limits, network: str) -> dict:
    if network != "none":
        raise ProviderUnavailable(
            f"network policy {network!r}",
            "the native provider offers network='none' (a private namespace with loopback only)",
        )
    return {
        "ro_paths": list(python_paths()),
        "disk_bytes": limits.disk_mb << 20,
        "open_files": limits.open_files,
        "file_size_bytes": (limits.file_size_mb or 0) << 20,
        # RLIMIT_CPU counts whole seconds: round up, never grant less than asked.
        "cpu_time_s": math.ceil(limits.cpu_time_s or 0),
        # Internet sockets are allowed: the network namespace, not the filter, is what keeps
        # them on loopback. Netlink, packet, vsock and AF_ALG sockets stay denied.
        "seccomp": seccomp_program(True),
        "last_cap": _last_cap(),
        "init_path": INIT_PATH,
    }


def verdict(out: dict, stats: CgroupStats, limits: Limits) -> ExecResult:
    """Turns the native outcome and the cgroup's counters into an ExecResult."""
    exit_code: int | None = None
    sig: int | None = None
    if out["timed_out"]:
        sig = _signal.SIGKILL
    elif out["have_status"]:
        ws = out["wait_status"]
        if os.WIFEXITED(ws):
            exit_code = os.WEXITSTATUS(ws)
        else:
            sig = os.WTERMSIG(ws)
    else:
        # The init itself was killed, which happens only from outside: the OOM killer (a
        # memory.oom.group kill takes every process) or a kill of the whole sandbox.
        sig = _signal.SIGKILL
    free = out["disk_free_bytes"]
    cpu_s = (out["cpu_user_us"] + out["cpu_sys_us"]) / 1e6
    reason, hit = judge(Ending(
        signal=sig, timed_out=out["timed_out"], oom_killed=bool(stats.oom_kills),
        memory_limit_hit=stats.memory_limit_hit, pids_limit_hit=stats.pids_limit_hit,
        disk_full=out["disk_full_at_kill"] or (free is not None and free == 0),
        cpu_over=bool(limits.cpu_time_s and cpu_s >= limits.cpu_time_s)))
    # The cgroup is the command's alone (a fresh sandbox each run): its peak is the command's.
    peak = stats.peak_memory_bytes or out["max_rss_kb"] * 1024
    source = "exec" if stats.peak_memory_bytes else "process" if peak else "none"
    return ExecResult(
        exit_code=exit_code,
        signal=int(sig) if sig is not None else None,
        stdout=out["stdout"],
        stderr=out["stderr"],
        reason=reason,
        limits_hit=hit,
        duration_s=out["duration_s"],
        peak_memory_bytes=peak,
        stdout_truncated=out["stdout_truncated"],
        stderr_truncated=out["stderr_truncated"],
        stdout_dropped=out["stdout_dropped"],
        stderr_dropped=out["stderr_dropped"],
        peak_memory_source=source,
    )


def run(argv: list[str], envl: list[str], *, stdin: bytes | None, limits: Limits,
        network: str, cwd: str | None, max_output_bytes: int) -> ExecResult:
    """``argv`` (checked by the caller) in a fresh sandbox of ``limits``: one made ahead for
    that shape, or one made now; torn down after."""
    from warden.providers.native import prepare

    key = (limits.memory_mb, limits.pids, limits.cpus, limits.cpu_time_s, limits.disk_mb,
           limits.open_files, limits.file_size_mb, network)
    ready = prepare.preparer().sandbox(key, partial(make_sandbox, limits, network))
    return run_in(ready, argv, envl, stdin=stdin, limits=limits, cwd=cwd,
                  max_output_bytes=max_output_bytes)


def run_in(ready, argv: list[str], envl: list[str], *, stdin: bytes | None, limits: Limits,
           cwd: str | None, max_output_bytes: int) -> ExecResult:
    """Start ``argv`` in the waiting sandbox ``ready`` (prepare.Ready), wait for it, and hand
    the sandbox to the preparer for removal."""
    from warden.providers.native import prepare

    prep = prepare.preparer()
    path = next(e[5:] for e in envl if e.startswith("PATH="))
    try:
        out = ready.box.start(argv, envl, _exec_candidates(argv[0], path), cwd or "/workspace",
                              stdin, float(limits.wall_time_s), max_output_bytes)
    except BaseException:
        prep.done(ready)
        raise
    # The namespaces' last references: closed with the cgroup's removal, after the caller
    # has its result (their teardown is work the caller need not wait for).
    held = () if out["mount_ns_fd"] < 0 else (out["mount_ns_fd"],)
    try:
        stats = ready.cgroup.stats()
    finally:
        prep.done(ready, held)
    return verdict(out, stats, limits)


def make_sandbox(limits: Limits, network: str = "none"):
    """A whole sandbox for ``limits``, its init waiting for the command (prepare.Ready)."""
    from warden.providers.native import prepare

    cfg = base_config(limits, network=network)
    # One more pid than asked for: the sandbox's init, which the caller did not start.
    host_id = identity.acquire()
    try:
        cg = prepare.preparer().cgroup(limits.memory_mb << 20, limits.pids + 1, limits.cpus)
    except BaseException:
        host_id.release()
        raise
    netns = None
    try:
        cfg.update(host_id.config())
        netns = _core.netns_create()
        cfg["cgroup_procs"] = cg.procs_files()
        fd = cg.dir_fd()
        if fd is not None:
            cfg["cgroup_fd"] = fd
        cfg["netns_fd"] = netns
        cfg["hold_mount_ns"] = True
        box = _core.PreparedSandbox(cfg)
    except BaseException:
        if netns is not None:
            os.close(netns)
        cg.destroy()
        host_id.release()
        raise
    return prepare.Ready(box, cg, netns, host_id)
