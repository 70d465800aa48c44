"""The native provider: sandboxes made by warden's own C++ core, workers forked by the zygote.

Each sandbox is one worker process in its own user, pid, mount, network, ipc, uts and cgroup
namespaces, with its own cgroup, seccomp filter and quota'd writable area, under warden-init
as pid 1, which reaps orphans and reports how the worker ended. The host talks to the worker
over one socket (warden.wire.channel). A call that passes its deadline kills the whole
sandbox (killing its init, the kernel takes every other process with it) and the channel is
abandoned, so a late reply can never reach another caller.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import itertools
import os
import select
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import cast

from warden import _core
from warden.errors import (
    CallFailed,
    CgroupTeardownError,
    MemoryLimitExceeded,
    PluginError,
    SandboxFileError,
    TimeoutExceeded,
    WorkerCrashed,
)
from warden.guest import files
from warden.host import cgroups, descriptors, identity, state
from warden.host.environ import python_paths, sandbox_env
from warden.providers.base import (
    Capabilities,
    Provider,
    ReconcileReport,
    SandboxHandle,
    SandboxSpec,
)
from warden.providers.errors import sandbox_error
from warden.providers.native import prepare, runner
from warden.providers.native.state import NativeState, state_of
from warden.providers.native.zygote import Zygote
from warden.spec.limits import Limits
from warden.spec.result import DEFAULT_OUTPUT_CAP, ExecResult
from warden.spec.verdict import Ending, judge
from warden.wire import ops
from warden.wire.channel import Channel, ChannelClosed
from warden.wire.paths import check_relative
from warden.wire.replies import parse_bytes, parse_entries, parse_exec

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
        assert mod.__file__ is not None  # all three are regular packages
        pkg_dir = os.path.dirname(os.path.abspath(mod.__file__))
        roots.add(os.path.dirname(pkg_dir))
    bound = python_paths()
    return sorted(r for r in roots
                  if not any(r == b or r.startswith(b + "/") for b in bound)
                  and not r.startswith("/usr/"))


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


_PROVIDERS = itertools.count(1)
# How long a worker whose channel closed has to end before it is killed: its init reports the
# end at once; a worker that closed its channel and lives on is killed after this.
_END_REPORT_S = 2.0

# The tool layer's file ops, run on the host for a read-only workspace: the same functions
# the worker runs inside, under the same path rule.
_HOST_FILE_OPS: dict[str, Callable[..., object]] = {
    ops.WRITE_FILE: files.write_file, ops.READ_FILE: files.read_file,
    ops.LIST_FILES: files.list_files, ops.REMOVE_FILE: files.remove_file}


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
        return not state_of(self.handle).dead and not self.provider._exited(self.handle)

    def close(self) -> None:
        self.provider._teardown(self.handle)


class NativeProvider(Provider):
    name = "native"

    def __init__(self) -> None:
        # Each live sandbox holds a few descriptors here: room for more than ~300 of them.
        descriptors.raise_soft_limit()
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
        binds: list[tuple[str, str]] = []
        areas: list[tuple[str, str]] = []
        writable = list(spec.writable) or (["/workspace"] if host_ws is None else [])
        if spec.code_dir:
            code = os.path.realpath(spec.code_dir)
            # warden's own copy (a plugin's snapshot) is reached only as an area; a directory
            # of the caller's is bound as it is.
            (areas if state.areas().holds(code) else binds).append((code, spec.mount_at))
        if host_ws is not None:
            areas.append((host_ws, "/workspace"))
        cfg["ro_binds"] = binds
        cfg["area_binds"] = areas
        cfg["writable"] = [(w, 0o755) for w in writable] + [("/tmp", 0o1777)]
        cfg["cwd"] = spec.cwd
        cfg["init_path"] = runner.INIT_PATH
        return cfg

    def create(self, spec: SandboxSpec, *, reuse_key: str | None = None) -> SandboxHandle:
        self.check(spec)
        if reuse_key is not None:
            with self._lock:
                for h in self._live.values():
                    if h.reuse_key == reuse_key and h.spec == spec and not state_of(h).dead:
                        return h
        # A sandbox of this spec made ahead when the last one was destroyed (warden.providers.native.prepare),
        # or one made now. Either way it is new: no call has reached its worker yet.
        key = (self._token, _spec_key(spec))
        made = prepare.preparer().sandbox(key, partial(_Made, self, spec))
        handle = made.handle
        handle.spec = spec
        handle.labels = dict(spec.labels)
        handle.reuse_key = reuse_key
        state_of(handle).prep_key = key
        with self._lock:
            self._live[handle.id] = handle
        return handle

    def _spawn(self, spec: SandboxSpec) -> SandboxHandle:
        """A new sandbox with its worker started, not yet handed to anyone. A step that fails
        undoes those before it, so nothing of a half-made sandbox is left: no cgroup,
        namespace, socket or workspace directory. Running out of descriptors on the way is
        HostResourceExhausted, naming the limit."""
        lim = spec.limits
        prep = prepare.preparer()
        with contextlib.ExitStack() as undo:
            host_ws = None
            if spec.readonly:
                # A read-only workspace is a directory of warden's private area (mode 0700),
                # which the sandbox sees through an idmapped read-only mount: the tool layer
                # writes it from outside, the code inside can only read it.
                host_ws = descriptors.at_step("workspace directory", state.areas().make, "ws-")
                # Still empty if the sandbox is not made: rmdir needs no descriptor.
                undo.callback(os.rmdir, host_ws)
            host_id = descriptors.at_step("host identity", identity.acquire)
            try:
                # One more pid than asked for: the sandbox's init, which the caller did not
                # start.
                cg = descriptors.at_step("cgroup", prep.cgroup, lim.memory_mb << 20,
                                         lim.pids + 1, lim.cpus)
            except BaseException:
                host_id.release()
                raise
            # The identity is handed back once the cgroup, and so everything of it, is gone.
            undo.callback(prep.release, cg, host_id=host_id)
            pid, got, chan = self._start_worker(spec, host_ws, cg, host_id, undo)
            handle = SandboxHandle(
                id=f"native-{os.getpid()}-{next(self._seq)}", provider=self.name, spec=spec,
                labels=dict(spec.labels),
                _state=NativeState(
                    pid=pid, pidfd=got[0], status_fd=got[1], mount_ns=tuple(got[2:]), chan=chan,
                    cgroup=cg, host_id=host_id, host_ws=host_ws,
                    large_dir=f"/proc/{pid}/root{spec.data_dir}" if spec.data_dir else None))
            undo.pop_all()
        return handle

    def _start_worker(self, spec: SandboxSpec, host_ws: str | None, cg: cgroups.SandboxCgroup,
                      host_id: identity.HostId, undo: contextlib.ExitStack,
                      ) -> tuple[int, list[int], Channel]:
        """Have the zygote fork the sandbox into ``cg`` as ``host_id``: (its init's pid, the
        descriptors that came with the answer — the init's pidfd, its status pipe, the mount
        namespace —, the channel to the worker), each closed by ``undo`` unless the sandbox
        is made. Everything of this sandbox (config, environment, entry) travels on its own
        channel, never through the zygote."""
        with contextlib.ExitStack() as sent:  # the zygote has its own copies of these
            netns = descriptors.at_step("network namespace", prepare.preparer().netns)
            sent.callback(os.close, netns)
            host, child = descriptors.at_step("worker socket", socket.socketpair,
                                              socket.AF_UNIX, socket.SOCK_STREAM)
            undo.callback(host.close)
            sent.callback(child.close)
            cfg = self._config(spec, host_ws)
            cfg.update(host_id.config())
            cfg["cgroup_procs"] = cg.procs_files()
            # The sandbox's mount namespace comes back with the pidfd and is closed after the
            # worker is gone, in the background: its mounts' teardown is not destroy()'s wait.
            cfg["hold_mount_ns"] = True
            fds = [child.fileno(), netns]
            cg_fd = cg.dir_fd()
            if cg_fd is not None:
                fds.append(cg_fd)
            chan = Channel(host)
            setup = {"config": cfg, "env": sandbox_env(spec.env),
                     "entry": spec.entry_point or None, "data_dir": spec.data_dir or None}
            result, got = descriptors.at_step(
                "zygote spawn", self._zygote.spawn, chan, setup, fds, netns=True,
                cgroup_fd=cg.dir_fd() is not None)
        for fd in got:
            undo.callback(os.close, fd)
        if len(got) < 2:
            # recvmsg(2) drops the descriptors that do not fit this process's table
            # (MSG_CTRUNC). The sandbox lives, but unseen: closing its socket (undo) ends the
            # worker, and the removal of its cgroup takes whatever is left.
            raise descriptors.exhausted("receiving the sandbox's pidfd", errno.EMFILE)
        return cast("dict[str, int]", result)["pid"], got, chan  # the zygote is warden's own

    @staticmethod
    def _env(handle: SandboxHandle) -> dict[str, str]:
        return dict(e.split("=", 1) for e in sandbox_env(handle.spec.env))

    def _kill(self, handle: SandboxHandle) -> None:
        st = state_of(handle)
        try:
            signal.pidfd_send_signal(st.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _worker_status(self, handle: SandboxHandle) -> int | None:
        """The worker's exact wait status, as the sandbox's init reports it when the worker
        ends; None when the init was killed first (the whole sandbox killed, or a worker that
        closed its channel but would not end)."""
        try:
            rec = _core.final_status(state_of(handle).status_fd, _END_REPORT_S)
        except TimeoutError:
            self._kill(handle)
            try:
                rec = _core.final_status(state_of(handle).status_fd, 5.0)
            except TimeoutError:
                rec = None
        return None if rec is None else int(rec["wait_status"])

    def _death(self, handle: SandboxHandle, why: str) -> CallFailed:
        """Why the worker died, as the error a caller should see."""
        st = state_of(handle)
        status = self._worker_status(handle)
        self._kill(handle)
        stats = st.cgroup.stats()
        st.dead = why
        if stats.oom_kills:
            return MemoryLimitExceeded(
                f"sandbox {handle.id} was OOM-killed at its memory limit of "
                f"{handle.spec.limits.memory_mb} MiB (exit 137); raise the limit "
                "(Limits.memory_mb, max_memory_mb in plugin.yaml) or use less")
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
        if self._teardown(handle) and state_of(handle).prep_key is not None:
            # The next sandbox of its spec is made now, off the caller's path.
            prepare.preparer().finished(state_of(handle).prep_key)

    def _teardown(self, handle: SandboxHandle) -> bool:
        """Kill the worker, wait for its exit, remove the rest; False if done before."""
        st = state_of(handle)
        with st.lock:
            if st.destroyed:
                return False
            st.destroyed = True
            st.dead = st.dead or "destroyed"
            # The pidfd is the sandbox's init, its pid 1: once it has exited, so has
            # everything in it. Its exit is seen on the pidfd; the zygote reaps it by itself,
            # and the cgroup is removed in the background once empty: no round trip to the
            # zygote here.
            self._kill(handle)
            if not self._exited(handle, timeout_s=5.0):
                raise CgroupTeardownError(handle.id, errno.ETIMEDOUT,
                                          "its init did not exit within 5 s of SIGKILL")
            st.chan.close()
            os.close(st.pidfd)
            os.close(st.status_fd)
            prepare.preparer().release(st.cgroup, st.mount_ns, host_id=st.host_id)
            if st.host_ws:
                shutil.rmtree(st.host_ws, ignore_errors=True)
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
            dead = state_of(h).dead
            if not dead and self._alive(h):
                continue
            report.exits[h.id] = "crashed" if not dead else "exited"
            self.destroy(h)
            report.removed.append(h.id)
        report.removed.extend(cgroups.driver().sweep())
        report.removed.extend(state.sweep())
        return report

    def usable(self, handle: SandboxHandle) -> bool:
        # A worker that died unseen is found by its next call, which reports why; polling the
        # pidfd here would cost every call of a pool a system call.
        return not state_of(handle).dead

    @staticmethod
    def _exited(h: SandboxHandle, timeout_s: float = 0.0) -> bool:
        p = select.poll()
        p.register(state_of(h).pidfd, select.POLLIN)
        return bool(p.poll(int(timeout_s * 1000)))

    @classmethod
    def _alive(cls, h: SandboxHandle) -> bool:
        return not cls._exited(h)

    def close(self) -> None:
        prepare.preparer().retire(
            lambda key: isinstance(key, tuple) and key[0] == self._token)
        for h in self.list():
            self.destroy(h)
        self._zygote.close()

    # -- requests ------------------------------------------------------------------------------

    def call(self, handle: SandboxHandle, op: str, args: dict, *,
             timeout: float | None = None) -> object:
        return self._call(handle, op, args, timeout=timeout)

    def _call(self, handle: SandboxHandle, op: str, args: dict, *, timeout: float | None = None,
              path: str | None = None) -> object:
        st = state_of(handle)
        if timeout is None:
            timeout = handle.spec.limits.wall_time_s
        with st.lock:
            if st.dead:
                raise WorkerCrashed(f"sandbox {handle.id} is gone ({st.dead}); create a new one")
            deadline = time.monotonic() + timeout
            try:
                result = st.chan.call(op, deadline=deadline, data_dir=st.large_dir, **args)
            except TimeoutExceeded:
                self._kill(handle)
                st.dead = "timed out"
                raise TimeoutExceeded(
                    f"{op} in sandbox {handle.id} passed its {timeout:g}s deadline; the sandbox "
                    "and everything in it were killed") from None
            except ChannelClosed:
                raise self._death(handle, f"serving {op!r}") from None
            except (PluginError, SandboxFileError) as exc:
                err = sandbox_error(exc, handle, op, path=path,
                                    pids_limit_hit=lambda: st.cgroup.stats().pids_limit_hit)
                raise err from err.__cause__
            return result

    def exec(self, handle: SandboxHandle, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        limit = timeout if timeout is not None else handle.spec.limits.wall_time_s
        t0 = time.monotonic()
        try:
            # The worker enforces the command's own deadline; the call's deadline is a little
            # longer so the worker can report it instead of being killed.
            r = parse_exec(self.call(handle, ops.EXEC, {"argv": [os.fsdecode(a) for a in argv],
                                                        "stdin": stdin, "timeout": limit,
                                                        "env": self._env(handle)},
                                     timeout=limit + 5.0))
        except MemoryLimitExceeded:
            return ExecResult(None, signal.SIGKILL, b"", b"", "memory",
                              frozenset({"memory"}), time.monotonic() - t0)
        stats = state_of(handle).cgroup.stats()
        reason, hit = judge(Ending(
            signal=r.signal, timed_out=r.timed_out, oom_killed=bool(stats.oom_kills),
            memory_limit_hit=stats.memory_limit_hit, pids_limit_hit=stats.pids_limit_hit,
            disk_full=r.disk_full))
        return ExecResult(r.exit_code, r.signal, r.stdout, r.stderr, reason, hit,
                          time.monotonic() - t0, stats.peak_memory_bytes,
                          r.stdout_truncated, r.stderr_truncated)

    # -- files ---------------------------------------------------------------------------------

    def _files(self, handle: SandboxHandle, op: str, path: str, **fields: object) -> object:
        """A file op: on the host, beneath a read-only workspace that the sandbox only
        reads; else through the worker. The path goes as the caller gave it (checked here
        first), so that an error names it as given."""
        check_relative(path)
        root = state_of(handle).host_ws
        if root is None:
            return self._call(handle, op, {"path": path, **fields}, path=path)
        try:
            return _HOST_FILE_OPS[op](root, path, **fields)
        except SandboxFileError as exc:
            err = sandbox_error(exc, handle, op, path=path)
            raise err from err.__cause__

    def write_file(self, handle: SandboxHandle, path: str, data: bytes) -> None:
        self._files(handle, ops.WRITE_FILE, path, data=bytes(data))

    def read_file(self, handle: SandboxHandle, path: str) -> bytes:
        return parse_bytes(self._files(handle, ops.READ_FILE, path), "the file's content")

    def list_files(self, handle: SandboxHandle, path: str = ".") -> builtins.list[str]:
        return [e["name"] for e in parse_entries(self._files(handle, ops.LIST_FILES, path))]

    def remove_file(self, handle: SandboxHandle, path: str) -> None:
        self._files(handle, ops.REMOVE_FILE, path)

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            limits: Limits | None = None, network: str = "none",
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            max_output_bytes: int | None = None) -> ExecResult:
        # One-shot commands need no worker: a sandbox made ahead runs the command itself.
        return runner.run(list(argv), sandbox_env(env), stdin=stdin, limits=limits or Limits(),
                          network=network, cwd=cwd,
                          max_output_bytes=max_output_bytes or DEFAULT_OUTPUT_CAP)
