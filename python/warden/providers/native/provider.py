"""The native provider: sandboxes made by warden's own C++ core, workers forked by the zygote.

Each sandbox is one worker process in its own user, pid, mount, network, ipc, uts and cgroup
namespaces, with its own cgroup, seccomp filter and quota'd writable area, under warden-init
as pid 1, which reaps orphans and reports how the worker ended. The host talks to the worker
over one socket (warden.wire.ipc frames). A call that passes its deadline kills the whole
sandbox (killing its init, the kernel takes every other process with it) and the channel is
abandoned, so a late reply can never reach another caller.
"""

from __future__ import annotations

import errno
import itertools
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from functools import partial

from warden import _core
from warden.host import cgroups
from warden.host.environ import python_paths, sandbox_env
from warden.providers.native import prepare, runner
from warden.wire import ipc
from warden.errors import (
    CallFailed,
    CgroupTeardownError,
    DiskQuotaExceeded,
    MemoryLimitExceeded,
    PathEscapeError,
    PidsLimitExceeded,
    PluginError,
    TimeoutExceeded,
    WorkerCrashed,
)
from warden.spec.limits import Limits
from warden.spec.result import DEFAULT_OUTPUT_CAP, ExecResult
from warden.spec.verdict import Ending, judge
from warden.providers.base import (
    Capabilities,
    Provider,
    ReconcileReport,
    SandboxHandle,
    SandboxSpec,
)
from warden.wire.paths import check_relative
from warden.providers.native.zygote import Zygote

__all__ = ["NativeProvider"]

_ALL_LIMITS = frozenset({"memory_mb", "pids", "cpus", "wall_time_s", "cpu_time_s", "disk_mb",
                         "open_files", "file_size_mb"})


def _import_roots() -> list[str]:
    """Directories the worker's imports may need beyond the Python installation: the one
    holding the warden package (a source checkout in development) and the site directories
    of its dependencies."""
    import msgpack
    import yaml

    roots = set()
    for mod in (sys.modules["warden"], msgpack, yaml):
        pkg_dir = os.path.dirname(os.path.abspath(mod.__file__))
        roots.add(os.path.dirname(pkg_dir))
    bound = python_paths()
    return sorted(r for r in roots
                  if not any(r == b or r.startswith(b + "/") for b in bound)
                  and not r.startswith("/usr/"))


def _disk_error(err: PluginError) -> bool:
    return err.type in ("OSError", "IOError") and f"[Errno {errno.ENOSPC}]" in err.message


def _pids_error(err: PluginError) -> bool:
    """A fork or clone refused with EAGAIN (os.fork, subprocess), or a thread that could not
    be started: what the pids controller's refusal looks like from Python."""
    if err.type in ("BlockingIOError", "OSError") and f"[Errno {errno.EAGAIN}]" in err.message:
        return True
    return err.type == "RuntimeError" and "can't start new thread" in err.message


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


_PROVIDERS = itertools.count(1)
# How long a worker whose channel closed has to end before it is killed: its init reports the
# end at once; a worker that closed its channel and lives on is killed after this.
_END_REPORT_S = 2.0


def _spec_key(spec: SandboxSpec) -> tuple:
    """Everything that makes two sandboxes different, hashable: sandboxes made ahead are
    handed out only to a spec equal in every field."""
    return (spec.limits, spec.network, spec.readonly, tuple(sorted(spec.labels.items())),
            spec.code_dir, spec.mount_at, tuple(spec.writable), spec.cwd,
            tuple(sorted(spec.env.items())), spec.image, spec.entry_point, spec.data_dir)


class _Made:
    """A sandbox made for the preparer: ready while its worker lives and nothing killed it."""

    __slots__ = ("provider", "handle")

    def __init__(self, provider: NativeProvider, spec: SandboxSpec) -> None:
        self.provider = provider
        self.handle = provider._spawn(spec)

    def ready(self) -> bool:
        return not self.handle.state["dead"] and not self.provider._exited(self.handle)

    def close(self) -> None:
        self.provider._teardown(self.handle)


class NativeProvider(Provider):
    name = "native"

    def __init__(self) -> None:
        self._zygote = Zygote()
        self._lock = threading.Lock()
        self._live: dict[str, SandboxHandle] = {}
        self._seq = itertools.count(1)
        self._token = f"native-{next(_PROVIDERS)}"

    def capabilities(self) -> Capabilities:
        return Capabilities(isolation="namespaces+seccomp+cgroups", limits=_ALL_LIMITS,
                            network_policies=frozenset({"none"}), readonly_root=True)

    # -- life cycle ----------------------------------------------------------------------------

    def _config(self, spec: SandboxSpec, host_ws: str | None) -> dict:
        cfg = runner.base_config(spec.limits, network=spec.network)
        cfg["ro_paths"] = [*cfg["ro_paths"], *_import_roots()]
        binds = []
        writable = list(spec.writable) or (["/workspace"] if host_ws is None else [])
        if spec.code_dir:
            binds.append((os.path.realpath(spec.code_dir), spec.mount_at))
        if host_ws is not None:
            binds.append((host_ws, "/workspace"))
        cfg["ro_binds"] = binds
        cfg["writable"] = [(w, 0o755) for w in writable] + [("/tmp", 0o1777)]
        cfg["cwd"] = spec.cwd
        cfg["init_path"] = runner.INIT_PATH
        return cfg

    def create(self, spec: SandboxSpec, *, reuse_key: str | None = None) -> SandboxHandle:
        self.check(spec)
        if reuse_key is not None:
            with self._lock:
                for h in self._live.values():
                    if h.reuse_key == reuse_key and h.spec == spec and not h.state["dead"]:
                        return h
        # A sandbox of this spec made ahead when the last one was destroyed (warden.providers.native.prepare),
        # or one made now. Either way it is new: no call has reached its worker yet.
        key = (self._token, _spec_key(spec))
        made = prepare.preparer().sandbox(key, partial(_Made, self, spec))
        handle = made.handle
        handle.spec = spec
        handle.labels = dict(spec.labels)
        handle.reuse_key = reuse_key
        handle.state["created"] = time.monotonic()
        handle.state["prep_key"] = key
        with self._lock:
            self._live[handle.id] = handle
        return handle

    def _spawn(self, spec: SandboxSpec) -> SandboxHandle:
        """A new sandbox with its worker started, not yet handed to anyone."""
        lim = spec.limits
        host_ws = None
        if spec.readonly:
            # A read-only workspace is a host directory bound read-only: the tool layer writes
            # it from outside, the code inside can only read it.
            host_ws = tempfile.mkdtemp(prefix="warden-ws-")
            os.chmod(host_ws, 0o755)
        prep = prepare.preparer()
        # One more pid than asked for: the sandbox's init, which the caller did not start.
        cg = prep.cgroup(lim.memory_mb << 20, lim.pids + 1, lim.cpus)
        netns = prep.netns()
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            cfg = self._config(spec, host_ws)
            cfg["cgroup_procs"] = cg.procs_files()
            # The sandbox's mount namespace comes back with the pidfd and is closed after the
            # worker is gone, in the background: its mounts' teardown is not destroy()'s wait.
            cfg["hold_mount_ns"] = True
            fds = [child.fileno(), netns]
            if cg.dir_fd() is not None:
                fds.append(cg.dir_fd())
            chan = ipc.Channel(host)
            # Everything of this sandbox travels on its own channel, never through the zygote.
            setup = {"config": cfg, "env": sandbox_env(spec.env),
                     "entry": spec.entry_point or None, "data_dir": spec.data_dir or None}
            result, got = self._zygote.spawn(chan, setup, fds, netns=True,
                                             cgroup_fd=cg.dir_fd() is not None)
        except BaseException:
            host.close()
            prep.release(cg)
            if host_ws:
                shutil.rmtree(host_ws, ignore_errors=True)
            raise
        finally:
            child.close()
            os.close(netns)
        handle = SandboxHandle(
            id=f"native-{os.getpid()}-{next(self._seq)}", provider=self.name, spec=spec,
            labels=dict(spec.labels),
            state={"pid": result["pid"], "pidfd": got[0], "status_fd": got[1],
                   "mount_ns": tuple(got[2:]), "chan": chan,
                   "cgroup": cg, "lock": threading.Lock(), "dead": None, "host_ws": host_ws,
                   "created": time.monotonic(), "calls": 0})
        return handle

    @staticmethod
    def _env(handle: SandboxHandle) -> dict[str, str]:
        return dict(e.split("=", 1) for e in sandbox_env(handle.spec.env))

    def _kill(self, handle: SandboxHandle) -> None:
        st = handle.state
        try:
            signal.pidfd_send_signal(st["pidfd"], signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _worker_status(self, handle: SandboxHandle) -> int | None:
        """The worker's exact wait status, as the sandbox's init reports it when the worker
        ends; None when the init was killed first (the whole sandbox killed, or a worker that
        closed its channel but would not end)."""
        try:
            rec = _core.final_status(handle.state["status_fd"], _END_REPORT_S)
        except TimeoutError:
            self._kill(handle)
            try:
                rec = _core.final_status(handle.state["status_fd"], 5.0)
            except TimeoutError:
                rec = None
        return None if rec is None else int(rec["wait_status"])

    def _death(self, handle: SandboxHandle, why: str) -> CallFailed:
        """Why the worker died, as the error a caller should see."""
        st = handle.state
        status = self._worker_status(handle)
        self._kill(handle)
        stats = st["cgroup"].stats()
        st["dead"] = why
        if stats.oom_kills:
            return MemoryLimitExceeded(
                f"sandbox {handle.id} was OOM-killed at its memory limit of "
                f"{handle.spec.limits.memory_mb} MiB (exit 137); raise max_memory_mb or use less")
        sig: int | None
        if status is None:
            # The init was killed before the worker ended, and the kernel killed the worker
            # with it (pid_namespaces(7)).
            sig, code = signal.SIGKILL, None
            detail = "killed by SIGKILL with its whole sandbox"
        elif os.WIFSIGNALED(status):
            sig, code = os.WTERMSIG(status), None
            detail = ("killed by seccomp for a forbidden system call" if sig == signal.SIGSYS
                      else f"killed by {_signal_name(sig)}")
        else:
            sig, code = None, os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            detail = f"exited with status {code}"
        return WorkerCrashed(f"worker of sandbox {handle.id} died ({detail}) while {why}",
                             signal=sig, exit_code=code)

    def destroy(self, handle: SandboxHandle) -> None:
        with self._lock:
            self._live.pop(handle.id, None)
        if self._teardown(handle) and "prep_key" in handle.state:
            # The next sandbox of its spec is made now, off the caller's path.
            prepare.preparer().finished(handle.state["prep_key"])

    def _teardown(self, handle: SandboxHandle) -> bool:
        """Kill the worker, wait for its exit, remove the rest; False if done before."""
        st = handle.state
        with st["lock"]:
            if st.get("destroyed"):
                return False
            st["destroyed"] = True
            st["dead"] = st["dead"] or "destroyed"
            # The pidfd is the sandbox's init, its pid 1: once it has exited, so has
            # everything in it. Its exit is seen on the pidfd; the zygote reaps it by itself,
            # and the cgroup is removed in the background once empty: no round trip to the
            # zygote here.
            self._kill(handle)
            if not self._exited(handle, timeout_s=5.0):
                raise CgroupTeardownError(handle.id, errno.ETIMEDOUT,
                                          "its init did not exit within 5 s of SIGKILL")
            st["chan"].close()
            os.close(st["pidfd"])
            os.close(st["status_fd"])
            prepare.preparer().release(st["cgroup"], st["mount_ns"])
            if st["host_ws"]:
                shutil.rmtree(st["host_ws"], ignore_errors=True)
        return True

    def list(self, labels: Mapping[str, str] | None = None) -> list[SandboxHandle]:
        want = dict(labels or {})
        with self._lock:
            return [h for h in self._live.values()
                    if all(h.labels.get(k) == v for k, v in want.items())]

    def reconcile(self) -> ReconcileReport:
        """Drop sandboxes whose worker died, and sweep cgroups left by crashed warden
        processes. (Sandboxes of a dead host process die with its zygote: their inits carry
        PR_SET_PDEATHSIG.)"""
        report = ReconcileReport()
        for h in self.list():
            if not h.state["dead"] and self._alive(h):
                continue
            report.exits[h.id] = "crashed" if not h.state["dead"] else "exited"
            self.destroy(h)
            report.removed.append(h.id)
        report.removed.extend(cgroups.driver().sweep())
        return report

    @staticmethod
    def _exited(h: SandboxHandle, timeout_s: float = 0.0) -> bool:
        p = select.poll()
        p.register(h.state["pidfd"], select.POLLIN)
        return bool(p.poll(int(timeout_s * 1000)))

    @classmethod
    def _alive(cls, h: SandboxHandle) -> bool:
        return not cls._exited(h)

    def close(self) -> None:
        prepare.preparer().retire(lambda key: key[0] == self._token)
        for h in self.list():
            self.destroy(h)
        self._zygote.close()

    # -- requests ------------------------------------------------------------------------------

    def call(self, handle: SandboxHandle, op: str, args: dict, *,
             timeout: float | None = None) -> object:
        st = handle.state
        if timeout is None:
            timeout = handle.spec.limits.wall_time_s
        with st["lock"]:
            if st["dead"]:
                raise WorkerCrashed(f"sandbox {handle.id} is gone ({st['dead']}); create a new one")
            deadline = time.monotonic() + timeout
            try:
                result = st["chan"].call(op, deadline=deadline, **args)
            except TimeoutExceeded:
                self._kill(handle)
                st["dead"] = "timed out"
                raise TimeoutExceeded(
                    f"{op} in sandbox {handle.id} passed its {timeout:g}s deadline; the sandbox "
                    "and everything in it were killed") from None
            except ipc.ChannelClosed:
                raise self._death(handle, f"serving {op!r}") from None
            except PluginError as exc:
                if exc.type == "PathEscapeError":
                    # Raised by the worker's own path check, not by plugin code.
                    raise PathEscapeError(exc.message) from None
                if _disk_error(exc):
                    raise DiskQuotaExceeded(
                        f"sandbox {handle.id} filled its disk quota of "
                        f"{handle.spec.limits.disk_mb} MiB; further writes fail until files are "
                        f"removed ({exc.type}: {exc.message})") from exc
                if _pids_error(exc) and st["cgroup"].stats().pids_limit_hit:
                    raise PidsLimitExceeded(
                        f"sandbox {handle.id} reached its pids limit of "
                        f"{handle.spec.limits.pids} processes and threads ({exc.type}: "
                        f"{exc.message}); its worker is replaced, raise max_pids if the "
                        "plugin needs more") from exc
                raise
            st["calls"] += 1
            return result

    def exec(self, handle: SandboxHandle, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        limit = timeout if timeout is not None else handle.spec.limits.wall_time_s
        t0 = time.monotonic()
        try:
            # The worker enforces the command's own deadline; the call's deadline is a little
            # longer so the worker can report it instead of being killed.
            r = self.call(handle, "exec", {"argv": [os.fsdecode(a) for a in argv],
                                           "stdin": stdin, "timeout": limit,
                                           "env": self._env(handle)},
                          timeout=limit + 5.0)
        except MemoryLimitExceeded:
            return ExecResult(None, signal.SIGKILL, b"", b"", "memory",
                              frozenset({"memory"}), time.monotonic() - t0)
        stats = handle.state["cgroup"].stats()
        sig = r["signal"]
        reason, hit = judge(Ending(
            signal=sig, timed_out=r["timed_out"], oom_killed=bool(stats.oom_kills),
            memory_limit_hit=stats.memory_limit_hit, pids_limit_hit=stats.pids_limit_hit,
            disk_full=bool(r.get("disk_full"))))
        return ExecResult(r["exit_code"], sig, r["stdout"], r["stderr"], reason, hit,
                          time.monotonic() - t0, stats.peak_memory_bytes,
                          r["stdout_truncated"], r["stderr_truncated"])

    # -- files ---------------------------------------------------------------------------------

    def _host_path(self, handle: SandboxHandle, path: str) -> str:
        root = handle.state["host_ws"]
        full = os.path.realpath(os.path.join(root, check_relative(path)))
        if full != root and not full.startswith(root + "/"):
            raise PathEscapeError(f"path {path!r} resolves outside the workspace")
        return full

    def write_file(self, handle: SandboxHandle, path: str, data: bytes) -> None:
        if handle.state["host_ws"]:
            full = self._host_path(handle, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return
        self.call(handle, "write_file", {"path": check_relative(path), "data": bytes(data)})

    def read_file(self, handle: SandboxHandle, path: str) -> bytes:
        if handle.state["host_ws"]:
            fd = os.open(self._host_path(handle, path), os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                return f.read()
        return self.call(handle, "read_file", {"path": check_relative(path)})

    def list_files(self, handle: SandboxHandle, path: str = ".") -> list[str]:
        if handle.state["host_ws"]:
            return sorted(os.listdir(self._host_path(handle, path)))
        return [e["name"] for e in self.call(handle, "list_files", {"path": check_relative(path)})]

    def remove_file(self, handle: SandboxHandle, path: str) -> None:
        if handle.state["host_ws"]:
            full = self._host_path(handle, path)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
            return
        self.call(handle, "remove_file", {"path": check_relative(path)})

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            limits: Limits | None = None, network: str = "none",
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            max_output_bytes: int | None = None) -> ExecResult:
        # One-shot commands need no worker: a sandbox made ahead runs the command itself.
        return runner.run(list(argv), sandbox_env(env), stdin=stdin, limits=limits or Limits(),
                          network=network, cwd=cwd,
                          max_output_bytes=max_output_bytes or DEFAULT_OUTPUT_CAP)
