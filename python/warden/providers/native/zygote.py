"""The zygote: a clean interpreter that forks sandboxed workers on request.

The host application is never forked into a sandbox (its memory holds secrets). The zygote is
started by exec (``Zygote.start``) with a scrubbed environment and no inherited descriptors but
its control socket; it pre-imports the worker and then, per request, forks a child that comes
back already inside a fresh sandbox (``_core.fork_sandboxed``) and serves the worker protocol
on the socket the host sent along.

Control protocol (warden.wire.ipc frames on a unix socket, descriptors with SCM_RIGHTS):
    {"op": "spawn", "config": {...}, "entry": path|None, "netns": bool, "cgroup_fd": bool}
        + [worker socket, network namespace?, cgroup dir fd?]
        -> {"pid": n} + [pidfd, status pipe, mount namespace?]
    {"op": "ping"}             -> "pong"

The pid, pidfd and status pipe are those of the sandbox's init (warden-init, pid 1 inside, a
child of the zygote), which reaps for the worker and writes how it ended to the status pipe
(``_core.final_status``). The zygote reaps the inits as they end.
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


def _serve_worker(entry: str | None, data_dir: str | None) -> None:
    """In the sandboxed child: serve the worker protocol on descriptor 3, never return."""
    code = 0
    try:
        from warden.guest import toolops
        from warden.guest import worker

        if entry:
            factory = lambda: worker.load_entry(entry)
        else:
            factory = lambda: worker.Handler(_no_plugin)
        code = worker.serve(3, factory, data_dir=data_dir, extra_ops=toolops.OPS) or 0
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote's loop
        code = 70
    finally:
        os._exit(code)


# The sandboxes' inits are reaped as soon as they end (SIGCHLD): a zombie would keep its
# cgroup from being removed. Their own statuses say nothing: the worker's comes on the status
# pipe.
def _reap(signum: int | None = None, frame: object = None) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(fd: int) -> int:
    # Pre-imported once here, so that no worker pays for them.
    import asyncio  # noqa: F401
    import signal
    import subprocess  # noqa: F401

    from warden import _core
    from warden.wire import ipc
    from warden.guest import toolops
    from warden.guest import worker  # noqa: F401

    signal.signal(signal.SIGCHLD, _reap)
    ctl = ipc.Channel(socket.socket(fileno=fd))
    while True:
        try:
            msg, fds = ctl.recv_with_fds()
        except (ipc.ChannelClosed, WardenError):
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
                pid, pidfd, mount_ns, status = _core.fork_sandboxed(cfg)
                if pid == 0:
                    _serve_worker(msg.get("entry"), msg.get("data_dir"))
                for f in fds:
                    os.close(f)
                # The pidfd and status pipe, then the mount namespace when the config held it.
                back = [pidfd, status] if mount_ns < 0 else [pidfd, status, mount_ns]
                ctl.send(ipc.ok_reply(rid, {"pid": pid}), fds=back)
                for f in back:
                    os.close(f)
            elif op == "ping":
                ctl.send(ipc.ok_reply(rid, "pong"))
            else:
                raise ValueError(f"unknown zygote op {op!r}")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the host as a reply
            for f in fds:
                try:
                    os.close(f)
                except OSError:
                    pass
            reply = ipc.error_reply(rid, exc, origin="zygote")
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
        from warden.wire import ipc

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
        self._chan = ipc.Channel(host)

    def request(self, msg: dict, fds: list[int] = ()) -> tuple[object, list[int]]:
        from warden.wire import ipc

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
            raise ipc.error_from_reply(reply.get("error"))
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
