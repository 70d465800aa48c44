"""The zygote: a clean interpreter that forks sandboxed workers on request.

The host application is never forked into a sandbox (its memory holds secrets). The zygote is
started by exec (``Zygote.start``) with a scrubbed environment and no inherited descriptors but
its control socket; it pre-imports the worker and then forks makers, each of which takes one
request and, for a spawn, forks a worker that comes back already inside a fresh sandbox
(``_core.fork_sandboxed``) and serves the worker protocol on the socket the host sent along.

Control protocol (warden.wire.channel frames on a unix socket, descriptors with SCM_RIGHTS):
    {"op": "spawn", "netns": bool, "cgroup_fd": bool}
        + [worker socket, network namespace?, cgroup dir fd?]
        -> {"pid": n} + [pidfd, status pipe, mount namespace?]
    {"op": "ping"}             -> "pong"

The zygote itself never reads a request: it forks a maker, which takes one request from the
control socket, answers it and exits, and forks the next maker once it has answered. A spawn
request carries nothing of the sandbox it is for; the maker reads the sandbox's setup,
``{"config", "env", "entry", "data_dir", "max_large"}``, which the host sends as one frame on
the worker socket itself, and makes the sandbox. So no tenant's configuration, environment or
paths ever enter the zygote's memory, which every later sandbox would inherit: a worker starts
with the clean zygote and its own setup, nothing of any other sandbox's request. (The maker is
forked ahead of its request, so its fork is not part of the request's wait.)

The pid, pidfd and status pipe are those of the sandbox's init (warden-init, pid 1 inside, a
child of the zygote), which reaps for the worker and writes how it ended to the status pipe
(``_core.final_status``). The zygote reaps the inits as they end.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from warden.errors import ProtocolError, ProviderUnavailable, SandboxSetupError, WardenError

if TYPE_CHECKING:
    from warden.wire.channel import Channel

__all__ = ["Zygote", "main"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# How long a maker waits for its sandbox's setup: the host sends it right after the request.
_SETUP_WAIT_S = 30.0


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


def _serve_worker(entry: str | None, data_dir: str | None, env: list[str],
                  max_large: object = None) -> None:
    """In the sandboxed child: serve the worker protocol on descriptor 3, never return."""
    code = 0
    try:
        _apply_env(env)
        from warden.guest import toolops, worker

        def factory() -> object:
            return worker.load_entry(entry) if entry else worker.Handler(_no_plugin)
        code = worker.serve(3, factory, data_dir=data_dir, extra_ops=toolops.OPS,
                            large_replies=True,
                            max_large=max_large if type(max_large) is int else None) or 0
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _error_reply(rid: Any, exc: Exception) -> dict[str, Any]:
    from warden.wire.replies import error_reply

    reply = error_reply(rid, exc, origin="zygote")
    if isinstance(exc, SandboxSetupError):
        reply["setup"] = {"step": exc.step, "errno": exc.errno, "detail": exc.detail}
    return reply


def _read_setup(fd: int) -> dict[str, Any]:
    """The sandbox's setup: the one frame the host sends on the worker socket ``fd`` before
    any request. Read with the frame codec alone, never past the frame: the socket goes on to
    the worker, and the maker should touch as little memory as it can (every page it writes
    is a copy of the zygote's)."""
    from warden.wire.codec import INCOMPLETE, FrameReader

    reader = FrameReader()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + _SETUP_WAIT_S
    while (setup := reader.read()) is INCOMPLETE:
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            raise ProtocolError(f"the host sent no sandbox setup within {_SETUP_WAIT_S:g} s")
        chunk = os.read(fd, reader.wanted())
        if not chunk:
            raise ProtocolError("the host closed the worker socket before sending the setup")
        reader.feed(chunk)
    if not isinstance(setup, dict) or not isinstance(setup.get("config"), dict):
        raise ProtocolError("a sandbox's setup must be a map with a 'config' map; the host "
                            "sent something else")
    return setup


def _make(ctl: Channel, rid: Any, fds: list[int], msg: dict[str, Any], said: int) -> None:
    """In a maker, for one spawn request: read the sandbox's setup, make the sandbox, answer
    the host, say so on ``said``, exit. Never returns; the worker forked here serves and never
    returns either."""
    from warden import _core
    from warden.wire.replies import ok_reply

    code = 1
    try:
        back: list[int] = []
        try:
            setup = _read_setup(fds[0])
            cfg = dict(setup["config"])
            # Descriptors, in order: the worker's socket, then the optional ones named.
            cfg["pass_fds"] = [fds[0]]
            rest = iter(fds[1:])
            if msg.get("netns"):
                cfg["netns_fd"] = next(rest)
            if msg.get("cgroup_fd"):
                cfg["cgroup_fd"] = next(rest)
            # A sibling: the zygote, not this short-lived maker, is the init's parent.
            pid, pidfd, mount_ns, status = _core.fork_sandboxed(cfg, sibling=True)
            if pid == 0:
                _serve_worker(setup.get("entry"), setup.get("data_dir"), setup.get("env") or [],
                              setup.get("max_large"))
            # The pidfd and status pipe, then the mount namespace when the config held it.
            back = [pidfd, status] if mount_ns < 0 else [pidfd, status, mount_ns]
            reply = ok_reply(rid, {"pid": pid})
        except Exception as exc:
            reply = _error_reply(rid, exc)
        ctl.send(reply, fds=back)
        os.write(said, _ANSWERED)
        code = 0
    finally:
        os._exit(code)


# What a maker tells the zygote on its pipe: it took a request from the control socket, it
# answered it, or the host closed the control socket.
_TOOK, _ANSWERED, _CLOSED = b"T", b"A", b"C"


def _serve_one(ctl: Channel, said: int) -> None:
    """In a maker: take one request from the control socket, answer it, exit; never returns."""
    from warden.wire.channel import ChannelClosed
    from warden.wire.replies import ok_reply

    code = 1
    try:
        try:
            msg, fds = ctl.recv_with_fds()
        except (ChannelClosed, WardenError):
            os.write(said, _CLOSED)
            return
        os.write(said, _TOOK)
        req: dict[str, Any] = msg if isinstance(msg, dict) else {}
        rid = req.get("id")
        op = req.get("op")
        if op == "spawn":
            _make(ctl, rid, fds, req, said)
        _close_all(fds)
        if op == "ping":
            ctl.send(ok_reply(rid, "pong"))
        else:
            ctl.send(_error_reply(rid, ValueError(f"unknown zygote op {op!r}")))
        os.write(said, _ANSWERED)
        code = 0
    finally:
        os._exit(code)


def _hear(heard: int) -> bytes:
    """What the maker says, up to its answer or its end; its exit (the teardown of a whole
    copy of the zygote) is not waited for."""
    got = b""
    try:
        while _ANSWERED not in got and _CLOSED not in got:
            chunk = os.read(heard, 2)
            if not chunk:
                break
            got += chunk
    finally:
        os.close(heard)
    return got


# Every child of the zygote is reaped as soon as it ends (SIGCHLD): a maker, or a sandbox's
# init (a zombie would keep its cgroup from being removed). Their statuses say nothing: a
# maker speaks on its pipe, an init writes the worker's end to its status pipe.
def _reap(signum: int | None = None, frame: object = None) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _close_all(fds: list[int]) -> None:
    for f in fds:
        try:
            os.close(f)
        except OSError:
            pass


def main(fd: int) -> int:
    # Pre-imported once here, so that no worker pays for them.
    import asyncio  # noqa: F401
    import ctypes  # noqa: F401 - warden.wire.paths opens through openat2 with it
    import subprocess  # noqa: F401

    from warden import _core  # noqa: F401
    from warden.guest import (
        toolops,  # noqa: F401 - pre-imported for every worker
        worker,
    )
    from warden.wire.channel import Channel

    # Configured once here, inherited by every worker forked from this process.
    worker.log_to_stderr()
    signal.signal(signal.SIGCHLD, _reap)
    ctl = Channel(socket.socket(fileno=fd))
    while True:
        heard, said = os.pipe()
        try:
            maker = os.fork()
        except OSError:
            # Out of processes for now: the request waits in the socket meanwhile.
            _close_all([heard, said])
            time.sleep(0.05)
            continue
        if maker == 0:
            os.close(heard)
            _serve_one(ctl, said)
        os.close(said)
        got = _hear(heard)
        if _CLOSED in got:
            return 0
        if _TOOK in got and _ANSWERED not in got:
            # The maker died between taking a request and answering it: answer for it.
            ctl.send(_error_reply(None, SandboxSetupError(
                "handshake", errno.EPIPE, "the zygote's maker process ended before answering")))


class Zygote:
    """Host side: starts the zygote process and talks to it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._chan: Channel | None = None

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
        if self._chan is not None:
            # A zygote that died may have left its maker waiting on the old channel.
            self._chan.close()
        self._chan = Channel(host)

    def _channel(self) -> Channel:
        """The control channel, with a zygote started (again) when there is none."""
        if self._proc is None or self._proc.poll() is not None or self._chan is None:
            self._start()
        assert self._chan is not None  # _start set it or raised
        return self._chan

    def request(self, msg: dict[str, Any], fds: Sequence[int] = ()) -> tuple[object, list[int]]:
        with self._lock:
            chan = self._channel()
            msg = dict(msg, id=chan.next_id())
            chan.send(msg, fds=fds)
            reply, got = chan.recv_with_fds()
        return self._result(reply, got)

    def spawn(self, worker: Channel, setup: dict[str, Any], fds: list[int], *, netns: bool,
              cgroup_fd: bool) -> tuple[object, list[int]]:
        """Make a sandbox: the request to the zygote names only which descriptors come along
        (``fds``: the worker's socket, the network namespace, the cgroup directory); the
        sandbox's ``setup`` goes on ``worker``, the worker's own channel, to the maker."""
        with self._lock:
            chan = self._channel()
            msg = {"op": "spawn", "id": chan.next_id(), "netns": netns, "cgroup_fd": cgroup_fd}
            chan.send(msg, fds=fds)
            try:
                worker.send(setup)
            except BaseException:
                # The maker then sees the channel close and answers with an error, read here
                # so that the next request gets its own answer.
                worker.close()
                _, got = chan.recv_with_fds()
                _close_all(got)
                raise
            reply, got = chan.recv_with_fds()
        return self._result(reply, got)

    @staticmethod
    def _result(reply: Any, got: list[int]) -> tuple[object, list[int]]:
        from warden.wire.replies import error_from_reply

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
