"""The native provider: sandboxes made by warden's own C++ core, workers forked by the zygote.

Each sandbox is one worker process in its own user, pid, mount, network, ipc, uts and cgroup
namespaces, with its own cgroup, seccomp filter and quota'd writable area, under warden-init
as pid 1, which reaps orphans and reports how the worker ended. The host talks to the worker
over one socket (warden.wire.channel). A call that passes its deadline kills the whole
sandbox (killing its init, the kernel takes every other process with it) and the channel is
abandoned, so a late reply can never reach another caller. A reply the host refuses (over
the decode budget of warden.wire.bounds, carrying descriptors it should not, not the
protocol) gives ProtocolError and kills the sandbox the same way: its handle is dead and a
pool replaces it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar, cast

from warden import _core
from warden.errors import (
    CallFailed,
    CgroupTeardownError,
    MemoryLimitExceeded,
    PayloadTooLarge,
    PluginError,
    ProtocolError,
    SandboxFileError,
    SandboxPaused,
    TimeoutExceeded,
    WorkerCrashed,
)
from warden.host import cgroups, descriptors, identity, state
from warden.host.environ import sandbox_env
from warden.host.net import tls
from warden.providers.base import (
    Capabilities,
    Provider,
    ReconcileReport,
    SandboxHandle,
    SandboxSpec,
)
from warden.providers.errors import sandbox_error
from warden.providers.native import network, payloads, prepare, runner
from warden.providers.native.execs import ExecMixin
from warden.providers.native.files import FilesMixin
from warden.providers.native.pause import PauseMixin
from warden.providers.native.state import NativeState, spec_key, state_of
from warden.providers.native.zygote import Zygote
from warden.spec.limits import Limits
from warden.spec.network import NetworkPolicy
from warden.spec.result import DEFAULT_OUTPUT_CAP, ExecResult
from warden.wire import bounds
from warden.wire.channel import Channel, ChannelClosed

__all__ = ["NativeProvider"]

_T = TypeVar("_T")

_ALL_LIMITS = frozenset({"memory_mb", "pids", "cpus", "wall_time_s", "cpu_time_s", "disk_mb",
                         "open_files", "file_size_mb"})


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


_PROVIDERS = itertools.count(1)
# How long a worker whose channel closed has to end before it is killed: its init reports the
# end at once; a worker that closed its channel and lives on is killed after this.
_END_REPORT_S = 2.0


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


class NativeProvider(ExecMixin, network.NetworkMixin, FilesMixin, PauseMixin, Provider):
    """Sandboxes of warden's own core. ``max_decode_bytes``: the absolute cap on what one
    reply may make the host allocate (warden.wire.bounds; default WARDEN_MAX_DECODE_BYTES,
    else 1 GiB); each sandbox's own bound is at most twice its memory limit."""

    name = "native"

    def __init__(self, *, max_decode_bytes: int | None = None) -> None:
        self.max_decode_bytes = bounds.absolute_cap(max_decode_bytes)
        # Each live sandbox holds a few descriptors here: room for more than ~300 of them.
        descriptors.raise_soft_limit()
        self._zygote = Zygote()
        self._lock = threading.Lock()
        self._live: dict[str, SandboxHandle] = {}
        self._seq = itertools.count(1)
        self._token = f"native-{next(_PROVIDERS)}"

    def capabilities(self) -> Capabilities:
        return Capabilities(isolation="namespaces+seccomp+cgroups", limits=_ALL_LIMITS,
                            network_policies=frozenset({"none", "proxy", "transparent"}),
                            readonly_root=True, network_inject=True)

    # -- life cycle ----------------------------------------------------------------------------

    def _config(self, spec: SandboxSpec, host_ws: str | None, bundle: str | None = None) -> dict:
        # A policy's sandbox is jailed as one of "none": only its proxy differs.
        cfg = runner.base_config(spec.limits)
        cfg["ro_paths"] = [*cfg["ro_paths"], *runner.import_roots()]
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
        cfg["ro_binds"] = binds + network.binds(spec.network, bundle)
        cfg["area_binds"] = areas
        # warden's own areas may be read as "other" inside their 0700 directory: on a file
        # system without idmapped mounts (tmpfs before Linux 6.3) they are bound unmapped.
        cfg["area_unmapped_ok"] = True
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
        key = (self._token, spec_key(spec))
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
                # A tmpfs of its own, of the sandbox's disk size (where warden may mount).
                host_ws = descriptors.at_step("workspace directory", state.areas().make, "ws-",
                                              lim.disk_mb << 20)
                undo.callback(state.areas().remove, host_ws)
                # Its 0700 area keeps other host users out; the sandbox, which sees this
                # directory as its mount's root, may read it where it cannot be idmapped.
                os.chmod(host_ws, 0o755)
            host_id = descriptors.at_step("host identity", identity.acquire)
            try:
                # One more pid than asked for: the sandbox's init, which the caller did not
                # start.
                cg = descriptors.at_step("cgroup", prep.cgroup, lim.memory_mb << 20,
                                         lim.pids + 1, lim.cpus, freezer=True)
            except BaseException:
                host_id.release()
                raise
            # The identity is handed back once the cgroup, and so everything of it, is gone.
            undo.callback(prep.release, cg, host_id=host_id)
            ca, bundle = trust = network.trust_store(spec.network, undo)
            pid, got, chan, netns = self._start_worker(spec, host_ws, cg, host_id, undo, trust)
            handle = SandboxHandle(
                id=f"native-{os.getpid()}-{next(self._seq)}", provider=self.name, spec=spec,
                labels=dict(spec.labels),
                _state=NativeState(
                    pid=pid, pidfd=got[0], status_fd=got[1], mount_ns=tuple(got[2:]), chan=chan,
                    cgroup=cg, host_id=host_id, host_ws=host_ws,
                    large_dir=f"/proc/{pid}/root{spec.data_dir}" if spec.data_dir else None,
                    netns=netns, ca=ca, ca_bundle=bundle))
            network.attach(state_of(handle), spec.network)
            undo.pop_all()
        return handle

    def _start_worker(self, spec: SandboxSpec, host_ws: str | None, cg: cgroups.SandboxCgroup,
                      host_id: identity.HostId, undo: contextlib.ExitStack,
                      trust: tuple[tls.CertAuthority | None, str | None],
                      ) -> tuple[int, list[int], Channel, int]:
        """Have the zygote fork the sandbox into ``cg`` as ``host_id``: (its init's pid, the
        descriptors that came with the answer — the init's pidfd, its status pipe, the mount
        namespace —, the channel to the worker), each closed by ``undo`` unless the sandbox
        is made. Everything of this sandbox (config, environment, entry) travels on its own
        channel, never through the zygote."""
        with contextlib.ExitStack() as sent:  # the zygote has its own copies of these
            netns = descriptors.at_step("network namespace", prepare.preparer().netns)
            sent.callback(os.close, netns)
            kept = descriptors.at_step("network namespace", os.dup, netns)
            undo.callback(os.close, kept)
            host, child = descriptors.at_step("worker socket", socket.socketpair,
                                              socket.AF_UNIX, socket.SOCK_STREAM)
            undo.callback(host.close)
            sent.callback(child.close)
            ca, bundle = trust
            cfg = self._config(spec, host_ws, bundle)
            cfg.update(host_id.config())
            cfg["cgroup_procs"] = cg.procs_files()
            # The sandbox's mount namespace comes back with the pidfd and is closed after the
            # worker is gone, in the background: its mounts' teardown is not destroy()'s wait.
            cfg["hold_mount_ns"] = True
            fds = [child.fileno(), netns]
            cg_fd = cg.dir_fd()
            if cg_fd is not None:
                fds.append(cg_fd)
            # A reply carries at most one descriptor, and decodes within the sandbox's budget.
            chan = Channel(host, max_fds=bounds.REPLY_FDS, budget=bounds.decode_budget(
                spec.limits.memory_mb << 20, self.max_decode_bytes))
            env = network.env_for(spec.network, spec.env, ca)
            setup = {"config": cfg, "env": sandbox_env(env),
                     "entry": spec.entry_point or None, "data_dir": spec.data_dir or None,
                     # What the host takes beside a reply: the worker refuses more itself.
                     "max_large": chan.max_large}
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
        return cast("dict[str, int]", result)["pid"], got, chan, kept  # the zygote's own

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
        oom_kills = st.cgroup.stats().oom_kills
        st.dead = why
        # An OOM kill counted since the last look, and a worker that ended by SIGKILL (alone,
        # or with its whole sandbox when the kernel kills the cgroup as a group): not every
        # SIGKILL after an earlier OOM in the sandbox's life.
        killed = status is None or (os.WIFSIGNALED(status)
                                    and os.WTERMSIG(status) == signal.SIGKILL)
        if oom_kills > st.oom_seen and killed:
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

    def _refused(self, handle: SandboxHandle) -> None:
        """A reply the host refused: the sandbox is killed and its handle dead, so that
        nothing it sent before can answer a later request."""
        st = state_of(handle)
        st.chan.abandon("a reply was refused")
        self._kill(handle)
        st.dead = "its reply was refused"

    def _parse(self, handle: SandboxHandle, parse: Callable[..., _T], *args: object) -> _T:
        """A tool op's result checked field by field; a hostile one kills the sandbox."""
        try:
            return parse(*args)
        except ProtocolError:
            st = state_of(handle)
            with st.lock:
                if not st.destroyed:
                    self._refused(handle)
            raise

    def destroy(self, handle: SandboxHandle) -> None:
        with self._lock:
            self._live.pop(handle.id, None)
        self._end_pause(handle)
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
            network.detach(st)
            os.close(st.pidfd)
            os.close(st.status_fd)
            prepare.preparer().release(st.cgroup, st.mount_ns, host_id=st.host_id)
            if st.host_ws:
                state.areas().remove(st.host_ws)
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
        with state_of(handle).lock:
            return self._request(handle, op, args, timeout=timeout, path=path)

    def _request(self, handle: SandboxHandle, op: str, args: dict, *,
                 timeout: float | None = None, path: str | None = None,
                 on_stream: Callable[[dict], None] | None = None) -> object:
        """One request; the caller holds the sandbox's lock."""
        st = state_of(handle)
        if timeout is None:
            timeout = handle.spec.limits.wall_time_s
        self._check_live(handle)
        deadline = time.monotonic() + timeout
        try:
            return payloads.call(st.chan, op, args, deadline=deadline, data_dir=st.large_dir,
                                 on_stream=on_stream)
        except TimeoutExceeded:
            self._kill(handle)
            st.dead = "timed out"
            raise TimeoutExceeded(
                f"{op} in sandbox {handle.id} passed its {timeout:g}s deadline; the sandbox "
                "and everything in it were killed") from None
        except ChannelClosed:
            raise self._death(handle, f"serving {op!r}") from None
        except (ProtocolError, PayloadTooLarge):
            if st.chan.abandoned is not None:
                self._refused(handle)
            raise
        except (PluginError, SandboxFileError) as exc:
            err = sandbox_error(exc, handle, op, path=path,
                                pids_limit_hit=lambda: st.cgroup.stats().pids_limit_hit)
            raise err from err.__cause__

    @staticmethod
    def _check_live(handle: SandboxHandle) -> None:
        st = state_of(handle)
        if st.dead:
            raise WorkerCrashed(f"sandbox {handle.id} is gone ({st.dead}); create a new one")
        if st.paused:
            raise SandboxPaused(handle.id)

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            limits: Limits | None = None, network: str | NetworkPolicy = "none",
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            max_output_bytes: int | None = None) -> ExecResult:
        if not isinstance(network, str):
            return self._run_with_policy(argv, stdin=stdin, limits=limits or Limits(),
                                         network=network, env=env, cwd=cwd,
                                         max_output_bytes=max_output_bytes)
        # One-shot commands need no worker: a sandbox made ahead runs the command itself.
        return runner.run(list(argv), sandbox_env(env), stdin=stdin, limits=limits or Limits(),
                          network=network, cwd=cwd,
                          max_output_bytes=DEFAULT_OUTPUT_CAP if max_output_bytes is None
                          else max_output_bytes)
