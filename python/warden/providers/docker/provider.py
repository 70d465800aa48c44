"""The Docker provider: the same sandboxes, limits and worker protocol, in containers.

For hosts that cannot give warden user namespaces or cgroups (a locked-down container, a CI
runner, Docker Desktop). Each sandbox is one container whose main process (under Docker's
init) is warden's own worker, reached over the container's attached stdio
(providers.docker.link). Inside, a small boot program bridges stdio to a socket pair so that
``warden.worker.serve`` runs unchanged, with the tool ops of the native provider (exec, files,
call_fn).

warden's code reaches the container without any pull: the installed ``warden`` and ``msgpack``
packages are bound read-only at /opt/warden/lib (so any image with a Python 3 works; msgpack
falls back to its pure-Python codec when its C extension does not match the image's Python).
The bind needs a Docker engine on this machine (a remote DOCKER_HOST cannot see host paths).
How Limits become container options is providers.docker.config; containers of other and dead
warden processes, and the background upkeep, are providers.docker.reconcile.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from warden.errors import (
    CallFailed,
    InvalidArgument,
    MemoryLimitExceeded,
    PayloadTooLarge,
    PluginError,
    ProtocolError,
    ProviderUnavailable,
    SandboxFileError,
    SandboxPaused,
    TimeoutExceeded,
    WardenError,
    WorkerCrashed,
)
from warden.host.owner import owner_id
from warden.providers.base import (
    LABEL_KEYS,
    Capabilities,
    OutputCallbacks,
    Provider,
    SandboxHandle,
    SandboxSpec,
)
from warden.providers.errors import sandbox_error
from warden.providers.execs import During, counters, exec_result, output_cap
from warden.spec.result import ExecResult
from warden.wire import bounds, ops
from warden.wire.codec import DEFAULT_MAX_FRAME, encode
from warden.wire.paths import check_relative
from warden.wire.replies import error_from_reply, parse_bytes, parse_entries, parse_error

try:
    import docker
    import docker.errors
    import requests.exceptions  # the Docker SDK's transport
except ImportError as _exc:  # pragma: no cover - the registry turns this into an install hint
    raise ImportError("the Docker provider needs the Docker SDK: pip install 'warden[docker]'",
                      name="docker") from _exc

from warden.providers.docker import network
from warden.providers.docker.config import container_config
from warden.providers.docker.link import Link, attach
from warden.providers.docker.pause import PauseMixin
from warden.providers.docker.reconcile import CLAIMED, Housekeeper, Reconciling
from warden.providers.docker.state import DockerState, state_of

__all__ = ["DockerProvider"]

_T = TypeVar("_T")

log = logging.getLogger(__name__)

_ALL_LIMITS = frozenset({"memory_mb", "pids", "cpus", "wall_time_s", "cpu_time_s", "disk_mb",
                         "open_files", "file_size_mb"})
_STOP_GRACE_S = 5.0
_EXEC_GRACE_S = 5.0


class DockerProvider(network.NetworkMixin, Reconciling, PauseMixin, Provider):
    """Sandboxes as containers of one Docker engine (``DOCKER_HOST``, else the default socket).

    ``idle_seconds``: a reusable sandbox (one created with a reuse key) unused for that long is
    removed by the background reaper, which re-checks its activity under its lock first.
    ``reconcile_interval``: seconds between background reconciliations (0 disables them).
    ``max_decode_bytes``: the absolute cap on what one reply may make the host allocate
    (warden.wire.bounds; default WARDEN_MAX_DECODE_BYTES, else 1 GiB); each sandbox's own
    bound is at most twice its memory limit. A reply the host refuses (over that bound or
    ``max_frame``, not the protocol) gives ProtocolError and kills the container; the next
    request gets a fresh one.
    """

    name = "docker"

    def __init__(self, client=None, *, idle_seconds: float = 300.0,
                 reconcile_interval: float = 60.0, max_frame: int = DEFAULT_MAX_FRAME,
                 max_decode_bytes: int | None = None) -> None:
        if client is None:
            try:
                client = docker.from_env(timeout=60)
                client.ping()
            except docker.errors.DockerException as exc:
                raise ProviderUnavailable(
                    "a Docker engine at DOCKER_HOST="
                    f"{os.environ.get('DOCKER_HOST', '(default socket)')}",
                    f"{exc}; start one (scripts/dockerd-start prints the DOCKER_HOST to export)",
                ) from exc
        self.client = client
        self.api = client.api
        self.idle_seconds = idle_seconds
        self.reconcile_interval = reconcile_interval
        self.max_frame = max_frame
        self.max_decode_bytes = bounds.absolute_cap(max_decode_bytes)
        self.owner = owner_id()
        self._lock = threading.Lock()
        self._live: dict[str, SandboxHandle] = {}
        self._deadlines: set[str] = set()     # container ids killed for passing a deadline
        self._seq = itertools.count(1)
        self._events_since = int(time.time())
        self._housekeeper = Housekeeper(self)
        self._image: str | None = None
        # A process that ends without close() would leave stopped containers for reconcile to
        # find; at a normal exit they are removed here. (SIGKILL skips this: reconcile's job.)
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        try:
            self.close()
        except (WardenError, docker.errors.DockerException, requests.exceptions.RequestException) \
                as exc:
            log.warning("could not remove this process's containers at exit (%s); "
                        "`reconcile()` from another process will", exc)

    # -- what this provider gives --------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return Capabilities(isolation="container+seccomp", limits=_ALL_LIMITS,
                            network_policies=frozenset({"none", "proxy"}), readonly_root=True,
                            images=True)

    def check(self, spec: SandboxSpec) -> None:
        super().check(spec)
        if spec.readonly:
            # The workspace is a tmpfs owned by the sandbox's user, who could make it writable
            # again; a read-only one needs a writer from outside, which this provider lacks.
            raise ProviderUnavailable(f"a read-only workspace on provider {self.name!r}",
                                      "use the native provider, or readonly=False")

    def _image_for(self, spec: SandboxSpec) -> str:
        if spec.image:
            return spec.image
        env = os.environ.get("WARDEN_DOCKER_IMAGE")
        if env:
            return env
        if self._image is None:
            from warden.providers.docker import images

            self._image = images.ensure_image(client=self.client)
        return self._image

    # -- life cycle ----------------------------------------------------------------------------

    def create(self, spec: SandboxSpec, *, reuse_key: str | None = None) -> SandboxHandle:
        self.check(spec)
        if reuse_key is not None:
            with self._lock:
                for h in self._live.values():
                    st = state_of(h)
                    if h.reuse_key == reuse_key and h.spec == spec and not st.destroyed:
                        st.last_used = time.monotonic()
                        return h
        wid = uuid.uuid4().hex[:12]
        labels = {k: v for k, v in spec.labels.items() if k in LABEL_KEYS}
        handle = SandboxHandle(id=wid, provider=self.name, spec=spec, labels=labels,
                               reuse_key=reuse_key, _state=DockerState())
        with state_of(handle).lock:
            self._start(handle)
        with self._lock:
            self._live[wid] = handle
        self._housekeeper.start()
        return handle

    def _start(self, handle: SandboxHandle) -> tuple[Link, str]:
        """A fresh container for ``handle`` (the first, or the replacement of a dead one): the
        link to it and its id."""
        st = state_of(handle)
        cfg = container_config(self.api, handle.spec, wid=handle.id, reuse_key=handle.reuse_key,
                               owner=self.owner, image=self._image_for(handle.spec),
                               name=f"warden-{handle.id}-{next(self._seq)}",
                               proxy_env=network.env_for(handle.spec))
        try:
            cid = self.api.create_container(**cfg)["Id"]
        except docker.errors.ImageNotFound as exc:
            raise ProviderUnavailable(
                f"image {cfg['image']} on the Docker engine",
                "build warden's own with `warden images build`, or set WARDEN_DOCKER_IMAGE / the "
                "manifest's image to an image that has python3") from exc
        except docker.errors.APIError as exc:
            raise ProviderUnavailable(f"a container for sandbox {handle.id}",
                                      f"the Docker engine refused it: {exc.explanation or exc}") from exc
        try:
            # Attached before start, so that nothing the worker writes is missed.
            link = attach(self.api, cid, self.max_frame, bounds.decode_budget(
                handle.spec.limits.memory_mb << 20, self.max_decode_bytes))
            self.api.start(cid)
        except docker.errors.APIError as exc:
            self._remove(cid)
            raise ProviderUnavailable(f"a running container for sandbox {handle.id}",
                                      f"the Docker engine could not start it: "
                                      f"{exc.explanation or exc}") from exc
        try:
            network.attach(self.api, st, handle.spec, cid)
        except (WardenError, docker.errors.APIError):  # no proxy: nothing of it is left
            link.close()
            self._remove(cid)
            raise
        st.container = cid
        CLAIMED.add(cid)
        st.link = link
        st.dead = None
        st.next_id = itertools.count(1)
        return link, cid

    def _remove(self, cid: str) -> None:
        CLAIMED.discard(cid)
        try:
            self.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass  # already removed: the goal is reached
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise ProviderUnavailable(f"removal of container {cid[:12]}", str(exc)) from exc

    def _kill(self, handle: SandboxHandle, why: str) -> None:
        st = state_of(handle)
        cid = st.container
        if st.link is not None:
            st.link.close()
            st.link = None
        st.dead = why
        if cid is None:
            return
        try:
            self.api.kill(cid)
        except docker.errors.NotFound:
            pass  # gone already
        except docker.errors.APIError as exc:
            if "is not running" not in str(exc):
                raise ProviderUnavailable(f"a kill of container {cid[:12]}", str(exc)) from exc

    def _ensure_running(self, handle: SandboxHandle) -> tuple[Link, str]:
        st = state_of(handle)
        if st.destroyed:
            raise WorkerCrashed(f"sandbox {handle.id} was destroyed; create a new one")
        if st.link is None or st.container is None:
            # The container died (timeout, crash, OOM, engine restart): the next request gets
            # a fresh one, in the same sandbox (same id, labels and spec; an empty workspace).
            if st.container is not None:
                self._remove(st.container)
            return self._start(handle)
        return st.link, st.container

    def _death(self, handle: SandboxHandle, why: str) -> CallFailed:
        """Why the container died, as the error the caller should see."""
        st = state_of(handle)
        cid = st.container
        assert cid is not None, "a request reached it, so it has a container"
        stderr = bytes(st.link.stderr[-2000:]) if st.link is not None else b""
        self._kill(handle, why)
        state = self._wait_state(cid)
        if state.get("OOMKilled"):
            return MemoryLimitExceeded(
                f"sandbox {handle.id} (container {cid[:12]}) was OOM-killed at its memory limit "
                f"of {handle.spec.limits.memory_mb} MiB (exit 137); raise max_memory_mb or use "
                "less")
        code = state.get("ExitCode")
        sig = code - 128 if isinstance(code, int) and code > 128 else None
        if not state:
            detail = "its container is gone"
        elif sig:
            detail = f"killed by {signal.Signals(sig).name}" if sig < 65 else f"exit {code}"
        else:
            detail = f"exited with status {code}"
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        more = f"; its last words: {' | '.join(tail)}" if tail else ""
        return WorkerCrashed(f"worker of sandbox {handle.id} (container {cid[:12]}) died "
                             f"({detail}) while {why}{more}; the next request starts a fresh one",
                             signal=sig, exit_code=None if sig else code)

    def _wait_state(self, cid: str) -> dict:
        try:
            self.api.wait(cid, timeout=_STOP_GRACE_S)
        except docker.errors.NotFound:
            return {}
        except requests.exceptions.RequestException:
            pass  # still stopping after the grace period: its state so far is the answer
        try:
            return self.api.inspect_container(cid)["State"]
        except docker.errors.NotFound:
            return {}

    def destroy(self, handle: SandboxHandle) -> None:
        st = state_of(handle)
        if st.foreign:
            raise InvalidArgument("handle", handle.id,
                                  f"a sandbox of this process; it belongs to warden process "
                                  f"{st.owner}, which removes it (or reconcile, once it died)")
        with self._lock:
            self._live.pop(handle.id, None)
        with st.lock:
            if st.destroyed:
                return
            st.destroyed = True
            if st.link is not None:
                st.link.close()
                st.link = None
            st.dead = st.dead or "destroyed"
            if st.container is not None:
                self._remove(st.container)
            network.detach(st)

    def usable(self, handle: SandboxHandle) -> bool:
        st = state_of(handle)
        return not st.dead and not st.foreign

    def close(self) -> None:
        atexit.unregister(self._at_exit)
        self._housekeeper.stop()
        for h in [h for h in self.list() if not state_of(h).foreign]:
            self.destroy(h)

    # -- requests ------------------------------------------------------------------------------

    def call(self, handle: SandboxHandle, op: str, args: dict, *,
             timeout: float | None = None) -> object:
        return self._call(handle, op, args, timeout=timeout)

    def _call(self, handle: SandboxHandle, op: str, args: dict, *, timeout: float | None = None,
              path: str | None = None) -> object:
        st = state_of(handle)
        if st.foreign:
            raise WorkerCrashed(f"sandbox {handle.id} belongs to warden process "
                                f"{st.owner}; only its owner may call into it")
        if st.paused:
            raise SandboxPaused(handle.id)
        if timeout is None:
            timeout = handle.spec.limits.wall_time_s
        msg = {"id": 0, "op": op}
        msg.update(args)
        with st.lock:
            st.busy += 1
            try:
                return self._request(handle, op, msg, timeout, path)
            finally:
                st.busy -= 1
                st.last_used = time.monotonic()

    def _request(self, handle: SandboxHandle, op: str, msg: dict, timeout: float,
                 path: str | None = None) -> object:
        st = state_of(handle)
        link, cid = self._ensure_running(handle)
        msg["id"] = request_id = next(st.next_id)
        frame = encode(msg, self.max_frame)      # PayloadTooLarge before anything is sent
        deadline = time.monotonic() + timeout
        try:
            link.send(frame, deadline)
            reply = link.recv(deadline)
        except TimeoutError:
            with self._lock:
                self._deadlines.add(cid)
            self._kill(handle, "timed out")
            raise TimeoutExceeded(
                f"{op} in sandbox {handle.id} passed its {timeout:g}s deadline; its container "
                "and everything in it were killed; the next request gets a fresh one") from None
        except PayloadTooLarge as exc:
            # The worker's own send cap refuses such a reply: this one is hostile, and what
            # follows it on the stream cannot answer a later request.
            self._kill(handle, "reply over the frame cap")
            raise ProtocolError(f"the reply to request {request_id} in sandbox {handle.id} is "
                                f"a frame of {exc.size} bytes, over the cap of {exc.limit}; its "
                                "container was killed and will be replaced") from exc
        except (EOFError, OSError):
            raise self._death(handle, f"serving {op!r}") from None
        except ProtocolError:
            self._kill(handle, "protocol error")
            raise
        if (type(reply) is not dict or reply.get("id") != request_id
                or reply.get("ok") not in (True, False)):
            self._kill(handle, "out of step")
            raise ProtocolError(f"reply to request {request_id} in sandbox {handle.id} carried "
                                "another id or no 'ok'; its container was killed and will be "
                                "replaced")
        if reply.get("ok") is True:
            return reply.get("result")
        self._parsed(handle, parse_error, reply.get("error"))
        err = error_from_reply(reply.get("error"))
        if isinstance(err, (PluginError, SandboxFileError)):
            # No pids_limit_hit: the host cannot read the container's cgroup on the call
            # path, so a refused fork or thread stays the code's own PluginError.
            err = sandbox_error(err, handle, op, path=path)
        raise err from err.__cause__

    def _parsed(self, handle: SandboxHandle, parse: Callable[..., _T], *args: object) -> _T:
        """A reply's fields checked one by one; a hostile reply kills the container, so that
        nothing it sent can answer a later request."""
        try:
            return parse(*args)
        except ProtocolError:
            st = state_of(handle)
            with st.lock:
                if st.container is not None and not st.dead:
                    self._kill(handle, "hostile reply")
            raise

    def exec(self, handle: SandboxHandle, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float | None = None, max_output_bytes: int | None = None,
             env: Mapping[str, str] | None = None, cwd: str | None = None,
             on_output: OutputCallbacks | None = None) -> ExecResult:
        if on_output is not None:
            raise ProviderUnavailable("streaming exec output (on_stdout/on_stderr) on provider "
                                      "'docker'", "use spawn() and Process.output() instead")
        limit = timeout if timeout is not None else handle.spec.limits.wall_time_s
        cap = output_cap(handle.spec.limits, self.max_frame, max_output_bytes)
        argv = [os.fsdecode(a) for a in argv]
        # The host's interpreter path means "Python" (warden.Sandbox.run_python passes it); in
        # a container that is the image's python3.
        if argv and argv[0] in (sys.executable, os.path.realpath(sys.executable)):
            argv[0] = "python3"
        t0 = time.monotonic()
        try:
            # The worker enforces the command's deadline (it kills the command's process
            # group); the call's own deadline is a little longer, as a backstop that kills
            # the container when the worker cannot answer.
            reply = self.call(handle, ops.EXEC, {"argv": argv, "stdin": stdin,
                                                 "timeout": limit, "max_output": cap,
                                                 "env_add": dict(env) if env else None,
                                                 "cwd": cwd},
                              timeout=limit + _EXEC_GRACE_S)
        except MemoryLimitExceeded:
            return exec_result(None, cap, During(), time.monotonic() - t0)
        except TimeoutExceeded:
            return ExecResult(None, signal.SIGKILL, b"", b"", "timeout", frozenset(),
                              time.monotonic() - t0)
        # The worker read the container cgroup's counters around the command: their growth
        # is what this command did. The container cannot reset its peak (its cgroup files
        # are read-only inside).
        before = self._parsed(handle, counters, reply, "cg_before")
        after = self._parsed(handle, counters, reply, "cg_after")

        def grew(key: str) -> bool:
            return after.get(key, 0) > before.get(key, 0)

        return self._parsed(handle, exec_result, reply, cap, During(
            oom_killed=grew("oom_kills"), memory_limit_hit=grew("memory_max"),
            pids_limit_hit=grew("pids_max"),
            peak_before=before.get("peak", 0), peak_after=after.get("peak", 0)),
            time.monotonic() - t0)

    def tool_call(self, handle: SandboxHandle, op: str, args: dict,
                  parse: Callable[[object], _T], *, timeout: float | None = None) -> _T:
        return self._parsed(handle, parse, self.call(handle, op, args, timeout=timeout))

    # -- files: through the worker, whose tool ops confine paths to the workspace --------------

    def _file_op(self, handle: SandboxHandle, op: str, path: str, **fields: object) -> object:
        # Checked here first; sent as given, so that an error names the path as given.
        check_relative(path)
        return self._call(handle, op, {"path": path, **fields}, path=path)

    def write_file(self, handle: SandboxHandle, path: str, data: bytes) -> None:
        self._file_op(handle, ops.WRITE_FILE, path, data=bytes(data))

    def read_file(self, handle: SandboxHandle, path: str) -> bytes:
        return self._parsed(handle, parse_bytes, self._file_op(handle, ops.READ_FILE, path),
                            "the file's content")

    def list_files(self, handle: SandboxHandle, path: str = ".") -> list[str]:
        return [e["name"] for e in self._parsed(handle, parse_entries,
                                                self._file_op(handle, ops.LIST_FILES, path))]

    def remove_file(self, handle: SandboxHandle, path: str) -> None:
        self._file_op(handle, ops.REMOVE_FILE, path)
