"""warden.Sandbox: a long-lived sandbox with files, commands and Python, for agents' tools."""

from __future__ import annotations

import builtins
import errno
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import IO, TypeVar, cast

from warden.errors import InvalidArgument, PathEscapeError, sandbox_file_error
from warden.providers.base import Provider
from warden.providers.registry import get_provider
from warden.sandboxes import checks, lifetime, transfer
from warden.sandboxes import watch as watching
from warden.sandboxes.notebook import Execution, Notebook
from warden.sandboxes.process import Process, ProcessInfo
from warden.sandboxes.terminal import Terminal, check_size
from warden.sandboxes.watch import Watch, WatchEvent
from warden.spec.limits import Limits
from warden.spec.network import NetworkEvent, NetworkPolicy
from warden.spec.result import ExecResult
from warden.spec.sandbox import SandboxSpec
from warden.wire import ops, procs
from warden.wire.entries import MAX_ENTRIES, Entry, parse_entries, parse_entry

_T = TypeVar("_T")

__all__ = ["Entry", "Execution", "Files", "Process", "ProcessInfo", "Sandbox", "Terminal",
           "Watch", "WatchEvent"]


class Files:
    """The sandbox's workspace. Paths are relative to it; ``..``, absolute paths and symbolic
    links anywhere on a path are refused with PathEscapeError (no link is followed, not even
    one pointing inside); a path that is not text at all is an InvalidArgument. A failure is
    a SandboxFileError, which is also the matching OSError (FileNotFoundError,
    IsADirectoryError, ...) with ``filename`` the path as given; a write past the disk quota
    is DiskQuotaExceeded."""

    def __init__(self, box: Sandbox) -> None:
        self._box = box

    def write(self, path: str, data: bytes | str) -> None:
        path, data = checks.file_path(path), checks.file_data(data)
        self._box._provider.write_file(self._box._handle, path, data)

    def read(self, path: str) -> bytes:
        return self._box._provider.read_file(self._box._handle, checks.file_path(path))

    def list(self, path: str = ".") -> list[str]:
        return self._box._provider.list_files(self._box._handle, checks.file_path(path))

    def remove(self, path: str) -> None:
        self._box._provider.remove_file(self._box._handle, checks.file_path(path))

    def _tool(self, op: str, args: dict, parse: Callable[[object], _T]) -> _T:
        return self._box._provider.tool_call(self._box._handle, op, args, parse)

    def stat(self, path: str) -> Entry:
        """Type, size, mode and mtime of ``path`` (a link itself, not followed)."""
        return self._tool(ops.FILE_STAT, {"path": checks.file_path(path)}, parse_entry)

    def mkdir(self, path: str, parents: bool = True) -> None:
        self._tool(ops.FILE_MKDIR, {"path": checks.file_path(path),
                                    "parents": checks.flag(parents, "parents")}, _none)

    def rename(self, src: str, dst: str) -> None:
        self._tool(ops.FILE_RENAME, {"src": checks.file_path(src, "src"),
                                     "dst": checks.file_path(dst, "dst")}, _none)

    def entries(self, path: str = ".", recursive: bool = False) -> builtins.list[Entry]:
        """The entries under ``path`` with type, size, mode and mtime, sorted per
        directory (the whole tree with ``recursive``; at most 100,000)."""
        return self._tool(ops.FILE_ENTRIES, {"path": checks.file_path(path),
                                             "recursive": checks.flag(recursive, "recursive")},
                          lambda v: parse_entries(v, MAX_ENTRIES))

    def upload(self, src: str | os.PathLike[str] | IO[bytes], path: str) -> int:
        """Copy a local file (a path or a binary file object) to ``path`` in 1 MiB chunks:
        memory stays bounded whatever its size. Returns the bytes copied."""
        return transfer.upload(self._box, src, checks.file_path(path))

    def download(self, path: str, dst: str | os.PathLike[str] | IO[bytes]) -> int:
        """Copy ``path`` to a local file (a path or a binary file object) in 1 MiB chunks.
        Returns the bytes copied."""
        return transfer.download(self._box, checks.file_path(path), dst)


def _none(value: object) -> None:
    return None


class Sandbox:
    """A sandbox that lives until ``close()``: one worker in its own namespaces and cgroup.

    ``readonly=True`` makes the workspace read-only to the code inside (``files.write`` from
    outside still works). ``labels`` (tenant, project, environment, purpose) are kept for
    listing and reuse; with ``reuse_key`` a live sandbox of the same key and spec is reused.

    Every argument of every method is checked before anything runs: a wrong one is an
    InvalidArgument naming it, and the sandbox and its files are as they were. ``timeout``
    is None (the sandbox's ``limits.wall_time_s``) or seconds above 0 up to
    ``checks.MAX_TIMEOUT_S`` (a week); there is no unbounded timeout.

    ``ttl_s`` closes the sandbox that many seconds after it was made; ``idle_timeout_s``
    closes it once no operation has been in flight or started for that long (processes
    running inside do not count: see warden.sandboxes.lifetime). Each is None or a finite
    number of seconds above 0. After either, every use raises SandboxExpired.
    """

    def __init__(self, limits: Limits | None = None, network: str | NetworkPolicy = "none",
                 labels: Mapping[str, str] | None = None, readonly: bool = False, *,
                 provider: str = "native", reuse_key: str | None = None,
                 env: Mapping[str, str] | None = None, ttl_s: float | None = None,
                 idle_timeout_s: float | None = None) -> None:
        spec = SandboxSpec(limits=checks.limits_of(limits), network=checks.network_policy(network),
                           readonly=checks.flag(readonly, "readonly"),
                           labels=checks.labels_map(labels), env=checks.env_map(env))
        key = checks.reuse_key(reuse_key)
        ttl = checks.lifetime_s(ttl_s, "ttl_s")
        idle = checks.lifetime_s(idle_timeout_s, "idle_timeout_s")
        self._provider: Provider = get_provider(provider)
        self.spec = spec
        self._handle = self._provider.create(spec, reuse_key=key)
        self._life: lifetime.Lifetime | None = None
        if ttl is not None or idle is not None:
            # The closer holds the provider and handle, not this object: a Sandbox its user
            # dropped is still closed when due.
            self._life = lifetime.Lifetime(self._handle.id, ttl, idle,
                                           partial(self._provider.destroy, self._handle))
            self._provider = cast(Provider, lifetime.Tracked(self._provider, self._life))
            lifetime.watch(self._life)
        self.files = Files(self)
        self._notebook = Notebook(self)

    @property
    def id(self) -> str:
        return self._handle.id

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._handle.labels)

    def exec(self, argv: Sequence[str], *, stdin: bytes | str | None = None,
             timeout: float | None = None, env: Mapping[str, str] | None = None,
             cwd: str | None = None, on_stdout: Callable[[bytes], object] | None = None,
             on_stderr: Callable[[bytes], object] | None = None,
             max_output_bytes: int | None = None) -> ExecResult:
        """Run ``argv`` (a list: ``["sh", "-c", line]`` for a shell line) and wait for its
        process to exit. A background process it started keeps running in the sandbox; the
        exec does not wait for it. ``env`` adds to the sandbox's environment for this
        command; ``cwd`` is an absolute path of a directory inside the sandbox (the
        workspace by default; a missing one is SandboxFileNotFound). Each of stdout and
        stderr keeps at most ``max_output_bytes``, and never more than a sixteenth of the
        memory limit or what fits one reply (None: that much); the rest is read and counted
        in ``stdout_dropped``/``stderr_dropped``. ``on_stdout``/``on_stderr`` get each chunk
        (at most 64 KiB) as the command prints it, in order, up to ``max_output_bytes`` of
        each stream (1 GiB when None); an exception a callback raises stops its calls and is
        raised once the command has ended. The result describes this command alone: its
        reason, limits reached and peak memory (``peak_memory_source``)."""
        args = checks.argv_list(argv)
        data = checks.stdin_bytes(stdin)
        limit = checks.timeout_s(timeout)
        extra = checks.env_map(env)
        where = checks.cwd_path(cwd)
        callbacks = {"stdout": checks.callback(on_stdout, "on_stdout"),
                     "stderr": checks.callback(on_stderr, "on_stderr")}
        cap = checks.output_cap(max_output_bytes)
        streaming = any(callbacks.values())
        return self._provider.exec(self._handle, args, stdin=data, timeout=limit,
                                   max_output_bytes=cap, env=extra or None, cwd=where,
                                   on_output={k: v for k, v in callbacks.items() if v}
                                   if streaming else None)

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | None = None, stdin: bool = True) -> Process:
        """Start ``argv`` in the background and return at once: the process outlives this
        call (and the sandbox's other requests run while it does) until it ends, is killed,
        or the sandbox closes. ``env`` and ``cwd`` as for exec; ``stdin=False`` gives it
        /dev/null. Its output is kept in the sandbox (the newest 1 MiB) until read."""
        args = checks.argv_list(argv)
        extra = checks.env_map(env)
        where = checks.cwd_path(cwd)
        piped = checks.flag(stdin, "stdin")
        pid, started = self._provider.tool_call(
            self._handle, ops.PROC_START,
            {"argv": args, "env": None, "env_add": extra or None, "cwd": where,
             "stdin": piped}, procs.parse_start)
        return Process(self, pid, args, started)

    def terminal(self, argv: Sequence[str] | None = None, *, cols: int = 80, rows: int = 24,
                 env: Mapping[str, str] | None = None, cwd: str | None = None) -> Terminal:
        """A program on a pseudo-terminal of the sandbox's own: a login shell (bash, else
        sh) when ``argv`` is None. TERM is xterm-256color unless ``env`` says otherwise; the
        window is ``cols`` x ``rows``. The terminal is also a process of ``processes()``."""
        args = None if argv is None else checks.argv_list(argv)
        size = check_size(cols, rows)
        extra = {"TERM": "xterm-256color", **checks.env_map(env)}
        where = checks.cwd_path(cwd)
        pid, started = self._provider.tool_call(
            self._handle, ops.PROC_START,
            {"argv": args, "env": None, "env_add": extra, "cwd": where, "stdin": True,
             "tty": size}, procs.parse_start)
        return Terminal(self, pid, args or ["<login shell>"], started)

    def watch(self, path: str = ".", recursive: bool = True) -> Watch:
        """Change events of ``path`` (a directory of the workspace; links refused), and
        with ``recursive`` of every directory below it, those made later included: an
        iterator of WatchEvent (created, modified, deleted, moved) from inotify inside the
        sandbox, for changes after this call returned. ``close()`` it (or use ``with``) to
        stop the watch; closing the sandbox ends the iteration. WatchLimitExceeded when the
        tree needs more inotify watches than the sandbox's user may have."""
        where = checks.file_path(path)
        deep = checks.flag(recursive, "recursive")
        entry = self.files.stat(where)
        if entry.type == "link":
            raise PathEscapeError(f"{where!r} in sandbox {self.id} is a symbolic link; watch "
                                  "the directory itself", path=where)
        if entry.type != "dir":
            raise sandbox_file_error(errno.ENOTDIR, where, op="watch", sandbox=self.id)
        return Watch(self, watching.start(self, where, deep), where)

    def processes(self) -> list[ProcessInfo]:
        """The live processes started through warden (spawn) in this sandbox: pid, argv,
        started (a time.time() value) and cpu_s so far."""
        return self._provider.tool_call(self._handle, ops.PROC_LIST, {}, procs.parse_list)

    def attach(self, pid: int) -> Process:
        """A Process for ``pid``, started through warden in this sandbox by any handle of it
        (another thread's, or another Sandbox made with the same reuse_key); it reads the
        output from the oldest still kept. ProcessNotFound when there is no such process."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise InvalidArgument("pid", pid, "the pid of a process from spawn()")
        for info in self.processes():
            if info.pid == pid:
                return Process(self, pid, info.argv, info.started)
        proc = Process(self, pid, [], None)
        proc.poll()  # an ended process the sandbox still knows, or ProcessNotFound
        return proc

    def run_python(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run ``code`` in a fresh interpreter inside the sandbox: a timeout or a crash ends
        that interpreter, never the sandbox."""
        source = checks.python_code(code)
        limit = checks.timeout_s(timeout)
        return self._provider.exec(self._handle, [sys.executable, "-I", "-c", source],
                                   timeout=limit)

    def run_code(self, code: str, *, context: str = "default",
                 timeout: float | None = None) -> Execution:
        """Run ``code`` as a notebook cell in ``context`` (made on first use): its
        variables, imports and functions persist for later cells of that context. The
        Execution holds what it printed, ``result`` (the text of the last expression's
        value), ``display`` (MIME bundles of rich values) and ``error``. A cell past
        ``timeout`` is interrupted and its context kept (error "TimeoutError"), or, when it
        does not yield, killed (error "ContextLost"). Contexts are this handle's."""
        source = checks.python_code(code)
        limit = checks.timeout_s(timeout) or self.spec.limits.wall_time_s
        return self._notebook.run(source, context, limit)

    def contexts(self) -> list[str]:
        """The names of this handle's code contexts."""
        return self._notebook.names()

    def reset_context(self, name: str) -> None:
        """End context ``name``: its next cell starts with a fresh namespace."""
        self._notebook.reset(name)

    def call(self, fn_source_or_name: str, payload: object = None,
             timeout: float | None = None) -> object:
        """Call a function inside the sandbox: pass its source (``def f(x): ...``) the first
        time, then its name alone. ``payload`` is what msgpack carries (checks.payload). On
        the native provider a payload over the frame cap (16 MiB) reaches the function as a
        read-only memoryview over the host's sealed memfd, and a large result comes back
        beside the reply, so a sandbox holds about one copy of either (README, "Large
        payloads"). A timeout kills the sandbox (TimeoutExceeded); an exception the function
        raises is a PluginError ("code in sandbox ... raised ...") with its type, message,
        traceback and, for an OSError, errno and path."""
        is_source, text = checks.function_ref(fn_source_or_name)
        args = {"payload": checks.payload(payload), "source" if is_source else "name": text}
        limit = checks.timeout_s(timeout)
        return self._provider.call(self._handle, ops.CALL_FN, args, timeout=limit)

    def set_network(self, network: str | NetworkPolicy) -> None:
        """Connections the sandbox opens from now on go by ``network`` (a NetworkPolicy, or
        "none"); those already open go on. Commands started from now on get the proxy
        variables of a policy."""
        self._provider.set_network(self._handle, checks.network_policy(network))

    def network_log(self) -> list[NetworkEvent]:
        """One entry per connection attempt through the sandbox's proxy, oldest first: time,
        host, port, address dialled, allowed or denied with the rule that decided, bytes up
        and down, duration (the last 10,000 attempts)."""
        return self._provider.network_log(self._handle)

    def egress_bytes(self) -> tuple[int, int]:
        """(up, down): the bytes warden's egress relayed to and from the world for this
        sandbox over its life (each exec's share is in its ExecResult)."""
        return self._provider.egress_bytes(self._handle)

    def expose(self, port: int) -> str:
        """"127.0.0.1:NNNNN": a port on the host's loopback forwarding to TCP ``port`` that
        the sandbox listens on (127.0.0.1 inside); gone with unexpose() or the sandbox."""
        return self._provider.expose(self._handle, port)

    def unexpose(self, port: int) -> None:
        self._provider.unexpose(self._handle, port)

    def pause(self, *, reclaim: bool = False) -> int:
        """Freeze every process of the sandbox (cgroup freezer): they use no CPU and keep
        their memory, open files and connections until resume(). While paused, exec, call,
        spawn, file and process operations raise SandboxPaused at once (nothing waits on a
        frozen process); close() works and kills everything without thawing it. An operation
        already in flight stalls, its timeout still running. ``reclaim=True`` also has the
        kernel take back what it can of the sandbox's memory (page cache and reclaimable
        kernel memory; anonymous memory only where the host has swap) and returns the bytes
        given back; else 0. Pausing a paused sandbox does nothing but the reclaim."""
        return self._provider.pause(self._handle, reclaim=checks.flag(reclaim, "reclaim"))

    def resume(self) -> None:
        """Thaw a paused sandbox: its processes go on where they stopped. Nothing when it is
        not paused."""
        self._provider.resume(self._handle)

    @property
    def paused(self) -> bool:
        return self._provider.paused(self._handle)

    def close(self) -> None:
        """Kill everything in the sandbox and free it (a paused one without thawing it).
        Allowed at any time, again, and after the sandbox expired."""
        if self._life is not None:
            self._life.finish()
        self._provider.destroy(self._handle)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
