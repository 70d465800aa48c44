"""The zygote: a clean interpreter that forks sandboxed workers on request.

The host application is never forked into a sandbox (its memory holds secrets). The zygote is
started by exec (``Zygote.start``) with a scrubbed environment and no inherited descriptors but
its control socket; it pre-imports the worker and then, per request, forks a child that comes
back already inside a fresh sandbox (``_core.fork_sandboxed``) and serves the worker protocol
on the socket the host sent along.

Control protocol (warden.wire.channel frames on a unix socket, descriptors with SCM_RIGHTS):
    {"op": "spawn", "config": {...}, "entry": path|None, "env": ["NAME=value", ...],
     "netns": bool, "cgroup_fd": bool}
        + [worker socket, network namespace?, cgroup dir fd?]
        -> {"pid": n} + [pidfd]
    {"op": "wait", "pid": n}   -> {"status": wait status}   (call once the pid died)
The zygote reaps its workers itself as they end, so the host need not ask.
    {"op": "ping"}             -> "pong"
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from warden.errors import ProviderUnavailable, SandboxSetupError, WardenError

__all__ = ["Zygote", "main"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _no_plugin(action: str, payload: object) -> object:
    raise LookupError(f"this sandbox runs no plugin, so action {action!r} has no handler; "
                      "use call_fn or run_python")


def _apply_env(env: list[str]) -> None:
    """The sandbox's environment ("NAME=value" items, host/environ.sandbox_env) as the
    worker's own: a forked worker never execs, so it would otherwise keep the zygote's."""
    os.environ.clear()
    for item in env:
        name, _, value = item.partition("=")
        os.environ[name] = value


def _serve_worker(entry: str | None, data_dir: str | None, env: list[str]) -> None:
    """In the sandboxed child: serve the worker protocol on descriptor 3, never return."""
    code = 0
    try:
        _apply_env(env)
        from warden.guest import toolops, worker

        if entry:
            factory = lambda: worker.load_entry(entry)
        else:
            factory = lambda: worker.Handler(_no_plugin)
        code = worker.serve(3, factory, data_dir=data_dir, extra_ops=toolops.OPS) or 0
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote's loop
        code = 70
    finally:
        os._exit(code)


# Wait statuses of workers that ended, reaped as soon as they end (SIGCHLD): a zombie would
# keep its cgroup from being removed. Kept until the host asks ("wait"), or until there are
# too many (a destroyed sandbox's status is never asked for).
_statuses: dict[int, int] = {}
_MAX_STATUSES = 4096


def _reap(signum: int | None = None, frame: object = None) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _statuses[pid] = status
        if len(_statuses) > _MAX_STATUSES:
            _statuses.pop(next(iter(_statuses)))


def _wait(pid: int) -> int:
    while pid not in _statuses:
        try:
            got, status = os.waitpid(pid, 0)
        except ChildProcessError:
            # Reaped by the SIGCHLD handler meanwhile, or not a child of ours.
            _reap()
            if pid not in _statuses:
                raise ValueError(f"pid {pid} is not a worker of this zygote") from None
        else:
            _statuses[got] = status
    return _statuses.pop(pid)


def main(fd: int) -> int:
    # Pre-imported once here, so that no worker pays for them.
    import asyncio  # noqa: F401
    import ctypes  # noqa: F401 - warden.wire.paths opens through openat2 with it
    import signal
    import subprocess  # noqa: F401

    from warden import _core
    from warden.guest import (
        toolops,  # noqa: F401 - pre-imported for every worker
        worker,
    )
    from warden.wire.channel import Channel, ChannelClosed
    from warden.wire.replies import error_reply, ok_reply

    # Configured once here, inherited by every worker forked from this process.
    worker.log_to_stderr()
    signal.signal(signal.SIGCHLD, _reap)
    ctl = Channel(socket.socket(fileno=fd))
    while True:
        try:
            msg, fds = ctl.recv_with_fds()
        except (ChannelClosed, WardenError):
            return 0
        rid = msg.get("id") if isinstance(msg, dict) else None
        op = msg.get("op") if isinstance(msg, dict) else None
        try:
            if op == "spawn":
                cfg = dict(msg["config"])
                # Descriptors, in order: the worker's socket, then the optional ones named.
                cfg["pass_fds"] = [fds[0]]
                rest = iter(fds[1:])
                if msg.get("netns"):
                    cfg["netns_fd"] = next(rest)
                if msg.get("cgroup_fd"):
                    cfg["cgroup_fd"] = next(rest)
                pid, pidfd, mount_ns = _core.fork_sandboxed(cfg)
                if pid == 0:
                    _serve_worker(msg.get("entry"), msg.get("data_dir"), msg.get("env") or [])
                for f in fds:
                    os.close(f)
                # The pidfd, then the mount namespace when the config held it.
                back = [pidfd] if mount_ns < 0 else [pidfd, mount_ns]
                ctl.send(ok_reply(rid, {"pid": pid}), fds=back)
                for f in back:
                    os.close(f)
            elif op == "wait":
                ctl.send(ok_reply(rid, {"status": _wait(int(msg["pid"]))}))
            elif op == "ping":
                ctl.send(ok_reply(rid, "pong"))
            else:
                raise ValueError(f"unknown zygote op {op!r}")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the host as a reply
            for f in fds:
                try:
                    os.close(f)
                except OSError:
                    pass
            reply = error_reply(rid, exc, origin="zygote")
            if isinstance(exc, SandboxSetupError):
                reply["setup"] = {"step": exc.step, "errno": exc.errno, "detail": exc.detail}
            ctl.send(reply)


class Zygote:
    """Host side: starts the zygote process and talks to it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._chan = None

    def _start(self) -> None:
        from warden.host.environ import sandbox_path
        from warden.wire.channel import Channel

        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pkg_parent = os.path.dirname(_PACKAGE_DIR)
        code = (f"import sys; sys.path.insert(0, {pkg_parent!r}); "
                f"from warden.providers.native.zygote import main; sys.exit(main({child.fileno()}))")
        env = {"PATH": sandbox_path(), "LANG": "C.UTF-8"}
        try:
            # -I: no PYTHON* variables, no user site, no script directory on sys.path.
            self._proc = subprocess.Popen([sys.executable, "-I", "-c", code], env=env,
                                          pass_fds=[child.fileno()], close_fds=True,
                                          stdin=subprocess.DEVNULL, cwd="/")
        except OSError as exc:
            raise ProviderUnavailable("the zygote interpreter", str(exc)) from exc
        finally:
            child.close()
        self._chan = Channel(host)

    def request(self, msg: dict, fds: list[int] = ()) -> tuple[object, list[int]]:
        from warden.wire.replies import error_from_reply

        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            msg = dict(msg, id=self._chan.next_id())
            self._chan.send(msg, fds=fds)
            reply, got = self._chan.recv_with_fds()
        if not reply.get("ok"):
            for f in got:
                os.close(f)
            if reply.get("setup"):
                raise SandboxSetupError(**reply["setup"])
            raise error_from_reply(reply.get("error"))
        return reply.get("result"), got

    def close(self) -> None:
        with self._lock:
            if self._chan is not None:
                self._chan.close()
                self._chan = None
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None
