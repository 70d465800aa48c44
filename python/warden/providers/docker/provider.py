"""The Docker provider: the same sandboxes, limits and worker protocol, in containers.

For hosts that cannot give warden user namespaces or cgroups (a locked-down container, a CI
runner, Docker Desktop). Each sandbox is one container whose main process (under Docker's
init) is warden's own worker, reached over the container's attached stdio: the host writes
frames to the container's stdin and reads them back from its stdout through the attach socket
(stdout and stderr arrive multiplexed; only stdout carries frames). Inside, a small boot
program bridges stdio to a socket pair so that ``warden.worker.serve`` runs unchanged, with the
tool ops of the native provider (exec, files, call_fn).

warden's code reaches the container without any pull: the installed ``warden`` and ``msgpack``
packages are bound read-only at /opt/warden/lib (so any image with a Python 3 works; msgpack
falls back to its pure-Python codec when its C extension does not match the image's Python).
The bind needs a Docker engine on this machine (a remote DOCKER_HOST cannot see host paths).

Limits become container options: memory and memory+swap equal, pids (plus warden's own init and
worker tasks), CPU quota, ``--network none``, a read-only root, size-limited tmpfs for the
writable areas, ``no-new-privileges``, every capability dropped, a seccomp profile generated
from the native filter's tables, and uid 1000.
"""

from __future__ import annotations

import atexit
import errno
import itertools
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence

from warden.wire import ipc
from warden.errors import (
    CallFailed,
    DiskQuotaExceeded,
    MemoryLimitExceeded,
    PathEscapeError,
    PluginError,
    ProtocolError,
    ProviderUnavailable,
    TimeoutExceeded,
    WardenError,
    WorkerCrashed,
)
from warden.spec.result import ExecResult
from warden.providers.base import (
    LABEL_KEYS,
    Capabilities,
    Provider,
    ReconcileReport,
    SandboxHandle,
    SandboxSpec,
)

try:
    import docker
    import docker.errors
    import requests.exceptions  # the Docker SDK's transport
except ImportError as _exc:  # pragma: no cover - the registry turns this into an install hint
    raise ImportError("the Docker provider needs the Docker SDK: pip install 'warden[docker]'",
                      name="docker") from _exc

__all__ = ["BOOT", "LIB_DIR", "DockerProvider", "owner_id", "parse_owner"]

log = logging.getLogger(__name__)

LIB_DIR = "/opt/warden/lib"
UID_GID = "1000:1000"
# Tasks that are warden's, not the caller's, counted by the pids controller: Docker's init, and
# the worker's main thread plus its two stdio pump threads.
_OWN_TASKS = 4
_ALL_LIMITS = frozenset({"memory_mb", "pids", "cpus", "wall_time_s", "cpu_time_s", "disk_mb",
                         "open_files", "file_size_mb"})
# The share of the disk quota that /tmp gets; the writable areas share the rest, so the sum of
# every tmpfs is the quota.
_TMP_SHARE = 8
_STOP_GRACE_S = 5.0
_EXEC_GRACE_S = 5.0

# Runs inside the container as `python3 -I -c BOOT <entry> <data_dir> <areas>`: warden's code is
# bound read-only at LIB_DIR; its package face loads nothing (not the native module, built for
# the host's Python), and warden.guest.container works on any Python 3.10+.
BOOT = ("import sys; sys.path.insert(0, %r); from warden.guest import container; "
        "container.main(sys.argv[1:])") % LIB_DIR


# Containers that some DockerProvider of this process is serving: reconcile by another instance
# in the same process must not adopt them (two hosts writing frames into one stdin).
_claimed: set[str] = set()


def _proc_starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may contain spaces and parentheses: fields start after the last ')'.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_id(pid: int | None = None) -> str:
    """``hostname:pid:starttime``: names one process for ever (a recycled pid has another
    start time), so reconcile can tell a dead owner from a live one."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_starttime(pid)}"


def parse_owner(owner: str) -> tuple[str, int, str] | None:
    host, _, rest = owner.rpartition(":")
    host, _, pid = host.rpartition(":")
    if not host or not pid.isdigit():
        return None
    return host, int(pid), rest


def _owner_alive(owner: str) -> bool | None:
    """True/False for an owner on this host; None when it lives on another host."""
    parsed = parse_owner(owner)
    if parsed is None:
        return False
    host, pid, start = parsed
    if host != socket.gethostname():
        return None
    return _proc_starttime(pid) == start


class _Link:
    """Frames over one container's attach socket: stdin is raw, and what comes back is
    Docker's multiplexed stream (8-byte header: stream type, 3 zero bytes, u32 length)."""

    _MUX = struct.Struct(">BxxxI")

    def __init__(self, sock: socket.socket, max_frame: int) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.reader = ipc.FrameReader(max_frame)
        self.max_frame = max_frame
        self._hdr = bytearray()
        self._stream = 0
        self._left = 0
        self.stderr = bytearray()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass  # already gone with the container: nothing to release

    def send(self, frame: bytes, deadline: float) -> None:
        view = memoryview(frame)
        while view:
            self._wait(select.POLLOUT, deadline)
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            view = view[n:]

    def _wait(self, events: int, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        p = select.poll()
        p.register(self.sock, events)
        if not p.poll(left * 1000):
            raise TimeoutError

    def recv(self, deadline: float) -> object:
        while True:
            msg = self.reader.read()
            if msg is not ipc.INCOMPLETE:
                return msg
            self._wait(select.POLLIN, deadline)
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise EOFError
            self._demux(data)

    def _demux(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._left == 0:
                need = 8 - len(self._hdr)
                self._hdr += view[:need]
                view = view[need:]
                if len(self._hdr) < 8:
                    return
                self._stream, self._left = self._MUX.unpack(self._hdr)
                self._hdr.clear()
                continue
            chunk = view[:self._left]
            view = view[len(chunk):]
            self._left -= len(chunk)
            if self._stream == 1:
                self.reader.feed(chunk)
            else:
                # The worker's stderr: kept (its tail) for the error message of a crash.
                self.stderr += chunk
                if len(self.stderr) > 16384:
                    del self.stderr[:-8192]


def _disk_error(err: PluginError) -> bool:
    return err.type in ("OSError", "IOError") and f"[Errno {errno.ENOSPC}]" in err.message


class DockerProvider(Provider):
    """Sandboxes as containers of one Docker engine (``DOCKER_HOST``, else the default socket).

    ``idle_seconds``: a reusable sandbox (one created with a reuse key) unused for that long is
    removed by the background reaper, which re-checks its activity under its lock first.
    ``reconcile_interval``: seconds between background reconciliations (0 disables them).
    """

    name = "docker"

    def __init__(self, client=None, *, idle_seconds: float = 300.0,
                 reconcile_interval: float = 60.0, max_frame: int = ipc.DEFAULT_MAX_FRAME) -> None:
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
        self.owner = owner_id()
        self._lock = threading.Lock()
        self._live: dict[str, SandboxHandle] = {}
        self._deadlines: set[str] = set()     # container ids killed for passing a deadline
        self._seq = itertools.count(1)
        self._events_since = int(time.time())
        self._stop = threading.Event()
        self._bg: threading.Thread | None = None
        self._image: str | None = None
        self._mounts: list | None = None
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
                            network_policies=frozenset({"none"}), readonly_root=True,
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

    def _lib_mounts(self) -> list:
        if self._mounts is None:
            import msgpack

            package_dir = os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.realpath(__file__))))
            mounts = []
            for src, name in ((package_dir, "warden"),
                              (os.path.dirname(os.path.realpath(msgpack.__file__)), "msgpack")):
                mounts.append(docker.types.Mount(f"{LIB_DIR}/{name}", src, type="bind",
                                                 read_only=True))
            self._mounts = mounts
        return self._mounts

    @staticmethod
    def _areas(spec: SandboxSpec) -> list[str]:
        return list(spec.writable) or ["/workspace"]

    def _tmpfs(self, spec: SandboxSpec) -> dict[str, str]:
        total_kb = spec.limits.disk_mb << 10
        tmp_kb = max(64, total_kb // _TMP_SHARE)
        areas = self._areas(spec)
        area_kb = max(64, (total_kb - tmp_kb) // len(areas))
        uid, gid = UID_GID.split(":")
        out = {a: f"size={area_kb}k,uid={uid},gid={gid},mode=0755,nosuid,nodev" for a in areas}
        out["/tmp"] = f"size={tmp_kb}k,mode=1777,nosuid,nodev"  # nosec B108
        return out

    def _container_config(self, spec: SandboxSpec, wid: str, reuse_key: str | None) -> dict:
        from warden._version import version
        from warden.host.seccomp_profile import docker_security_opt

        lim = spec.limits
        labels = {k: v for k, v in spec.labels.items()}
        labels.update({"warden.id": wid, "warden.version": version(),
                       "warden.owner": self.owner, "warden.provider": "docker"})
        if reuse_key is not None:
            labels["warden.reuse_key"] = reuse_key
        mounts = list(self._lib_mounts())
        if spec.code_dir:
            mounts.append(docker.types.Mount(spec.mount_at, os.path.realpath(spec.code_dir),
                                             type="bind", read_only=True))
        ulimits = [docker.types.Ulimit(name="nofile", soft=lim.open_files, hard=lim.open_files)]
        if lim.file_size_mb:
            ulimits.append(docker.types.Ulimit(name="fsize", soft=lim.file_size_mb << 20,
                                               hard=lim.file_size_mb << 20))
        if lim.cpu_time_s:
            cpu = int(-(-lim.cpu_time_s // 1))
            ulimits.append(docker.types.Ulimit(name="cpu", soft=cpu, hard=cpu))
        env = {"HOME": "/workspace", "LANG": "C.UTF-8", **dict(spec.env)}
        host_config = self.api.create_host_config(
            mem_limit=lim.memory_mb << 20,
            memswap_limit=lim.memory_mb << 20,
            pids_limit=lim.pids + _OWN_TASKS,
            nano_cpus=int(lim.cpus * 1e9),
            network_mode="none",
            read_only=True,
            tmpfs=self._tmpfs(spec),
            security_opt=["no-new-privileges:true", docker_security_opt(allow_inet=True)],
            cap_drop=["ALL"],
            init=True,
            ulimits=ulimits,
            mounts=mounts,
            ipc_mode="private",
            log_config=docker.types.LogConfig(type="none"),
        )
        areas = ":".join(self._areas(spec))
        return {
            "image": self._image_for(spec),
            "command": ["python3", "-I", "-c", BOOT, spec.entry_point or "", spec.data_dir or "",
                        areas],
            "entrypoint": [],
            "user": UID_GID,
            "working_dir": spec.cwd,
            "environment": env,
            "labels": labels,
            "hostname": "sandbox",
            "stdin_open": True,
            "tty": False,
            "network_disabled": True,
            "host_config": host_config,
            "name": f"warden-{wid}-{next(self._seq)}",
        }

    # -- life cycle ----------------------------------------------------------------------------

    def create(self, spec: SandboxSpec, *, reuse_key: str | None = None) -> SandboxHandle:
        self.check(spec)
        if reuse_key is not None:
            with self._lock:
                for h in self._live.values():
                    if h.reuse_key == reuse_key and h.spec == spec and not h.state["destroyed"]:
                        h.state["last_used"] = time.monotonic()
                        return h
        wid = uuid.uuid4().hex[:12]
        labels = {k: v for k, v in spec.labels.items() if k in LABEL_KEYS}
        handle = SandboxHandle(id=wid, provider=self.name, spec=spec, labels=labels,
                               reuse_key=reuse_key,
                               state={"lock": threading.RLock(), "container": None, "link": None,
                                      "dead": None, "destroyed": False, "calls": 0,
                                      "last_used": time.monotonic(), "busy": 0,
                                      "replacements": 0})
        with handle.state["lock"]:
            self._start(handle)
        with self._lock:
            self._live[wid] = handle
        self._ensure_background()
        return handle

    def _start(self, handle: SandboxHandle) -> None:
        """A fresh container for ``handle`` (the first, or the replacement of a dead one)."""
        st = handle.state
        cfg = self._container_config(handle.spec, handle.id, handle.reuse_key)
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
            raw = self.api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                      "stream": 1})
            sock = getattr(raw, "_sock", raw)
            link = _Link(sock, self.max_frame)
            link._keep = raw  # type: ignore[attr-defined]  # keeps the HTTP response alive
            self.api.start(cid)
        except docker.errors.APIError as exc:
            self._remove(cid)
            raise ProviderUnavailable(f"a running container for sandbox {handle.id}",
                                      f"the Docker engine could not start it: "
                                      f"{exc.explanation or exc}") from exc
        st["container"] = cid
        _claimed.add(cid)
        st["link"] = link
        st["dead"] = None
        st["next_id"] = itertools.count(1)

    def _remove(self, cid: str) -> None:
        _claimed.discard(cid)
        try:
            self.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass  # already removed: the goal is reached
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise ProviderUnavailable(f"removal of container {cid[:12]}", str(exc)) from exc

    def _kill(self, handle: SandboxHandle, why: str) -> None:
        st = handle.state
        cid = st["container"]
        if st["link"] is not None:
            st["link"].close()
            st["link"] = None
        st["dead"] = why
        if cid is None:
            return
        try:
            self.api.kill(cid)
        except docker.errors.NotFound:
            pass  # gone already
        except docker.errors.APIError as exc:
            if "is not running" not in str(exc):
                raise ProviderUnavailable(f"a kill of container {cid[:12]}", str(exc)) from exc

    def _ensure_running(self, handle: SandboxHandle) -> _Link:
        st = handle.state
        if st["destroyed"]:
            raise WorkerCrashed(f"sandbox {handle.id} was destroyed; create a new one")
        if st["link"] is None:
            # The container died (timeout, crash, OOM, engine restart): the next request gets
            # a fresh one, in the same sandbox (same id, labels and spec; an empty workspace).
            if st["container"] is not None:
                self._remove(st["container"])
            st["replacements"] += 1
            self._start(handle)
        return st["link"]

    def _death(self, handle: SandboxHandle, why: str) -> CallFailed:
        """Why the container died, as the error the caller should see."""
        st = handle.state
        cid = st["container"]
        stderr = bytes(st["link"].stderr[-2000:]) if st["link"] is not None else b""
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
        st = handle.state
        with self._lock:
            self._live.pop(handle.id, None)
        with st["lock"]:
            if st["destroyed"]:
                return
            st["destroyed"] = True
            if st["link"] is not None:
                st["link"].close()
                st["link"] = None
            st["dead"] = st["dead"] or "destroyed"
            if st["container"] is not None:
                self._remove(st["container"])

    def _containers(self, labels: Mapping[str, str] | None = None, *, all_states: bool = True
                    ) -> list[dict]:
        filters = ["warden.provider=docker", *(f"{k}={v}" for k, v in (labels or {}).items())]
        return self.api.containers(all=all_states, filters={"label": filters})

    def list(self, labels: Mapping[str, str] | None = None) -> list[SandboxHandle]:
        """This process's live sandboxes whose labels include ``labels``, plus those of other
        processes (found on the engine; ``state['owner']`` says whose, and they are not ours to
        call into)."""
        want = dict(labels or {})
        with self._lock:
            mine = [h for h in self._live.values()
                    if all(h.labels.get(k) == v for k, v in want.items())]
        known = {h.state["container"] for h in mine}
        others = []
        for c in self._containers(want, all_states=False):
            if c["Id"] in known:
                continue
            lab = c.get("Labels") or {}
            others.append(SandboxHandle(
                id=lab.get("warden.id", c["Id"][:12]), provider=self.name, spec=SandboxSpec(),
                labels={k: v for k, v in lab.items() if k in LABEL_KEYS},
                reuse_key=lab.get("warden.reuse_key"),
                state={"container": c["Id"], "owner": lab.get("warden.owner"), "foreign": True}))
        return mine + others

    def reconcile(self) -> ReconcileReport:
        """Remove containers of dead warden processes (orphans), find this process's dead
        containers and mark their sandboxes for a fresh container, re-adopt this process's live
        ones, and classify every exit seen (engine events and container state): "oom",
        "deadline", "crashed", "exited", or "missing" (the container vanished, as after an
        engine restart that lost it)."""
        report = ReconcileReport()
        oom_seen = self._oom_events()
        with self._lock:
            mine = {h.state["container"]: h for h in self._live.values()}
        seen: set[str] = set()
        for c in self._containers():
            cid = c["Id"]
            seen.add(cid)
            lab = c.get("Labels") or {}
            wid = lab.get("warden.id", cid[:12])
            owner = lab.get("warden.owner", "")
            running = c.get("State") == "running"
            handle = mine.get(cid)
            if handle is not None:
                if running:
                    report.recovered.append(wid)
                    continue
                report.exits[wid] = self._classify(cid, oom_seen)
                with handle.state["lock"]:
                    if handle.state["container"] == cid:
                        if handle.state["link"] is not None:
                            handle.state["link"].close()
                            handle.state["link"] = None
                        handle.state["dead"] = report.exits[wid]
                self._remove(cid)
                report.removed.append(wid)
                continue
            alive = _owner_alive(owner)
            if alive is None:
                continue  # another machine's container: not ours to judge
            if alive and owner != self.owner:
                continue  # a live warden process's sandbox
            if owner == self.owner and cid in _claimed:
                continue  # served by another provider object of this process
            if owner == self.owner and running and wid not in {h.id for h in mine.values()}:
                # Ours but unknown to this provider object (made by an earlier instance in
                # this process): adopt it under its labels so that list() shows it.
                self._adopt(c)
                report.recovered.append(wid)
                continue
            report.exits[wid] = "orphaned" if running else self._classify(cid, oom_seen)
            self._remove(cid)
            report.removed.append(wid)
        for cid, handle in mine.items():
            if cid is not None and cid not in seen and not handle.state["destroyed"]:
                with handle.state["lock"]:
                    if handle.state["container"] == cid:
                        if handle.state["link"] is not None:
                            handle.state["link"].close()
                            handle.state["link"] = None
                        handle.state["container"] = None
                        handle.state["dead"] = "missing"
                report.exits[handle.id] = "missing"
        return report

    def _adopt(self, c: dict) -> None:
        lab = c.get("Labels") or {}
        cid = c["Id"]
        raw = self.api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                  "stream": 1})
        link = _Link(getattr(raw, "_sock", raw), self.max_frame)
        link._keep = raw  # type: ignore[attr-defined]
        spec = SandboxSpec(labels={k: v for k, v in lab.items() if k in LABEL_KEYS})
        h = SandboxHandle(id=lab["warden.id"], provider=self.name, spec=spec,
                          labels=dict(spec.labels), reuse_key=lab.get("warden.reuse_key"),
                          state={"lock": threading.RLock(), "container": cid, "link": link,
                                 "dead": None, "destroyed": False, "calls": 0,
                                 "last_used": time.monotonic(), "busy": 0, "replacements": 0,
                                 "next_id": itertools.count(1 << 20), "adopted": True})
        with self._lock:
            self._live[h.id] = h
        _claimed.add(cid)

    def _classify(self, cid: str, oom_seen: set[str]) -> str:
        if cid in self._deadlines:
            return "deadline"
        try:
            state = self.api.inspect_container(cid)["State"]
        except docker.errors.NotFound:
            return "missing"
        if state.get("OOMKilled") or cid in oom_seen:
            return "oom"
        if state.get("ExitCode") == 0 and not state.get("Error"):
            return "exited"
        return "crashed"

    def _oom_events(self) -> set[str]:
        """Containers of warden's that the engine reported OOM events for since last time."""
        now = int(time.time())
        found: set[str] = set()
        try:
            stream = self.api.events(since=self._events_since, until=now, decode=True,
                                     filters={"type": "container", "event": "oom",
                                              "label": "warden.provider=docker"})
            for ev in stream:
                found.add(ev.get("id") or ev.get("Actor", {}).get("ID", ""))
        except docker.errors.APIError as exc:
            raise ProviderUnavailable("the Docker engine's event stream", str(exc)) from exc
        self._events_since = now
        return found

    # -- background: idle reaper and periodic reconciliation -----------------------------------

    def _ensure_background(self) -> None:
        if self._bg is not None or (self.reconcile_interval <= 0 and self.idle_seconds <= 0):
            return
        self._bg = threading.Thread(target=self._background, name="warden-docker-reaper",
                                    daemon=True)
        self._bg.start()

    def _background(self) -> None:
        period = min(x for x in (self.reconcile_interval, self.idle_seconds / 2, 30.0) if x > 0)
        last_reconcile = time.monotonic()
        while not self._stop.wait(period):
            self.reap_idle()
            if self.reconcile_interval > 0 and \
                    time.monotonic() - last_reconcile >= self.reconcile_interval:
                last_reconcile = time.monotonic()
                try:
                    self.reconcile()
                except (ProviderUnavailable, docker.errors.DockerException) as exc:
                    # The engine may be restarting; the next round tries again.
                    log.warning("background reconciliation failed: %s", exc)

    def reap_idle(self, now: float | None = None) -> list[str]:
        """Remove reusable sandboxes idle for ``idle_seconds``; return their ids. Each is
        re-checked under its own lock, so one picked up by a caller meanwhile survives."""
        if self.idle_seconds <= 0:
            return []
        removed = []
        with self._lock:
            candidates = [h for h in self._live.values() if h.reuse_key is not None]
        for h in candidates:
            st = h.state
            if not st["lock"].acquire(blocking=False):
                continue  # in use right now
            try:
                t = now if now is not None else time.monotonic()
                if st["busy"] or st["destroyed"] or t - st["last_used"] < self.idle_seconds:
                    continue
            finally:
                st["lock"].release()
            self.destroy(h)
            removed.append(h.id)
        return removed

    def close(self) -> None:
        atexit.unregister(self._at_exit)
        self._stop.set()
        for h in [h for h in self.list() if not h.state.get("foreign")]:
            self.destroy(h)
        if self._bg is not None:
            self._bg.join(timeout=5)

    # -- requests ------------------------------------------------------------------------------

    def call(self, handle: SandboxHandle, op: str, args: dict, *,
             timeout: float | None = None) -> object:
        st = handle.state
        if st.get("foreign"):
            raise WorkerCrashed(f"sandbox {handle.id} belongs to warden process "
                                f"{st.get('owner')}; only its owner may call into it")
        if timeout is None:
            timeout = handle.spec.limits.wall_time_s
        msg = {"id": 0, "op": op}
        msg.update(args)
        with st["lock"]:
            st["busy"] += 1
            try:
                return self._request(handle, op, msg, timeout)
            finally:
                st["busy"] -= 1
                st["last_used"] = time.monotonic()

    def _request(self, handle: SandboxHandle, op: str, msg: dict, timeout: float) -> object:
        st = handle.state
        link = self._ensure_running(handle)
        msg["id"] = request_id = next(st["next_id"])
        frame = ipc.encode(msg, self.max_frame)      # PayloadTooLarge before anything is sent
        deadline = time.monotonic() + timeout
        try:
            link.send(frame, deadline)
            reply = link.recv(deadline)
        except TimeoutError:
            with self._lock:
                self._deadlines.add(st["container"])
            self._kill(handle, "timed out")
            raise TimeoutExceeded(
                f"{op} in sandbox {handle.id} passed its {timeout:g}s deadline; its container "
                "and everything in it were killed; the next request gets a fresh one") from None
        except ipc.PayloadTooLarge:
            raise  # the reader skipped that reply: the stream is still in step
        except (EOFError, OSError):
            raise self._death(handle, f"serving {op!r}") from None
        except ProtocolError:
            self._kill(handle, "protocol error")
            raise
        if type(reply) is not dict or reply.get("id") != request_id:
            self._kill(handle, "out of step")
            raise ProtocolError(f"reply to request {request_id} in sandbox {handle.id} carried "
                                "another id; its container was killed and will be replaced")
        st["calls"] += 1
        if reply.get("ok") is True:
            return reply.get("result")
        exc = ipc.error_from_reply(reply.get("error"))
        if isinstance(exc, PluginError):
            if exc.type == "PathEscapeError":
                raise PathEscapeError(exc.message)
            if _disk_error(exc):
                raise DiskQuotaExceeded(
                    f"sandbox {handle.id} filled its disk quota of {handle.spec.limits.disk_mb} "
                    f"MiB; further writes fail until files are removed ({exc.type}: "
                    f"{exc.message})") from exc
        raise exc

    def exec(self, handle: SandboxHandle, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        limit = timeout if timeout is not None else handle.spec.limits.wall_time_s
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
            r = self.call(handle, "exec", {"argv": argv, "stdin": stdin, "timeout": limit},
                          timeout=limit + _EXEC_GRACE_S)
        except MemoryLimitExceeded:
            return ExecResult(None, signal.SIGKILL, b"", b"", "memory", frozenset({"memory"}),
                              time.monotonic() - t0)
        except TimeoutExceeded:
            return ExecResult(None, signal.SIGKILL, b"", b"", "timeout", frozenset(),
                              time.monotonic() - t0)
        before, after = r.get("cg_before") or {}, r.get("cg_after") or {}

        def grew(key: str) -> bool:
            return after.get(key, 0) > before.get(key, 0)

        hit = set()
        oom = grew("oom_kills")
        if oom or grew("memory_max"):
            hit.add("memory")
        if grew("pids_max"):
            hit.add("pids")
        if r.get("disk_full"):
            hit.add("disk")
        sig = r["signal"]
        if sig == signal.SIGXFSZ:
            hit.add("file_size")
        if sig == signal.SIGXCPU:
            hit.add("cpu_time")
        if r["timed_out"]:
            reason = "timeout"
        elif sig == signal.SIGSYS:
            reason = "seccomp"
        elif sig == signal.SIGKILL and oom:
            reason = "memory"
        elif sig:
            reason = "signaled"
        else:
            reason = "exited"
        return ExecResult(r["exit_code"], sig, r["stdout"], r["stderr"], reason, frozenset(hit),
                          time.monotonic() - t0, after.get("peak", 0),
                          r["stdout_truncated"], r["stderr_truncated"])

    # -- files: through the worker, whose tool ops confine paths to the workspace --------------

    def write_file(self, handle: SandboxHandle, path: str, data: bytes) -> None:
        from warden.wire.paths import check_relative

        self.call(handle, "write_file", {"path": check_relative(path), "data": bytes(data)})

    def read_file(self, handle: SandboxHandle, path: str) -> bytes:
        from warden.wire.paths import check_relative

        return self.call(handle, "read_file", {"path": check_relative(path)})

    def list_files(self, handle: SandboxHandle, path: str = ".") -> list[str]:
        from warden.wire.paths import check_relative

        return [e["name"] for e in self.call(handle, "list_files",
                                             {"path": check_relative(path)})]

    def remove_file(self, handle: SandboxHandle, path: str) -> None:
        from warden.wire.paths import check_relative

        self.call(handle, "remove_file", {"path": check_relative(path)})

