"""Sockets made in other network namespaces, used from the host.

A socket belongs for its whole life to the network namespace of the thread that made it
(socket(7), network_namespaces(7)); it can then be used from any thread. So warden makes the
listener a sandbox sees as its proxy inside the sandbox's namespace, and the sockets it dials
out with inside the egress namespace, on dedicated threads that enter the namespace with
setns(2) (CLONE_NEWNET), and does all the I/O from the host's event loop.

Python 3.11 has no os.setns: the libc call is made through ctypes.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from warden.errors import SandboxSetupError

__all__ = ["Dialer", "in_netns", "listener", "new_netns", "open_netns", "visit"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_local = threading.local()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listener(addr: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking TCP listener on ``addr:port`` in the calling thread's namespace (run it
    with in_netns to make it in another: a socket belongs to the namespace it was made in)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.bind((addr, port))
        s.listen(backlog)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def open_netns(path: str) -> int:
    """An O_RDONLY descriptor of ``path`` (checked to be a network namespace by Dialer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxSetupError("egress network namespace", exc.errno or errno.EINVAL,
                                "opening NetworkPolicy.egress_netns") from exc
    return fd


# One thread that enters a namespace, does one small thing and comes back: enough for the
# few sockets made per sandbox (its listener, an exposed port's inner connections).
_visitor = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                 thread_name_prefix="warden-netns")
_home: int | None = None


def in_netns(fd: int, fn: Callable[[], T]) -> T:
    """``fn()`` run on a thread inside the network namespace ``fd``."""
    return visit(fd, fn).result()


def visit(fd: int, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
    """``fn()`` to be run on a thread inside the network namespace ``fd``."""
    return _visitor.submit(_visit, fd, fn)


def _visit(fd: int, fn: Callable[[], T]) -> T:
    global _home
    if _home is None:
        _home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _setns(fd)
    try:
        return fn()
    finally:
        try:
            _setns(_home)
        except OSError:
            # The thread would stay in a sandbox's namespace: nothing may use it again.
            os._exit(70)


def new_netns() -> int:
    """A descriptor of a new, empty network namespace that no process is in: it lives as
    long as the descriptor and the sockets made in it (network_namespaces(7))."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def make() -> int:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            _setns(home)  # the visitor thread goes home, whether or not it moved

    try:
        return in_netns(home, make)
    finally:
        os.close(home)


class Dialer:
    """Names resolved and sockets made inside one egress namespace (None: warden's own).
    Its threads enter the namespace once and stay; ``close`` ends them and releases it."""

    def __init__(self, netns_path: str | None, threads: int = 4) -> None:
        self.path = netns_path
        self._fd = open_netns(netns_path) if netns_path is not None else None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="warden-dial")
        try:
            # setns(2) refuses a descriptor that is not a network namespace (EINVAL), and
            # one warden may not enter (EPERM): found here, before any sandbox relies on it.
            self.run(lambda: None).result()
        except OSError as exc:
            self.close()
            raise SandboxSetupError("egress network namespace", exc.errno or errno.EINVAL,
                                    "entering NetworkPolicy.egress_netns") from None

    def _enter(self) -> None:
        if self._fd is not None and getattr(_local, "netns", None) != self._fd:
            _setns(self._fd)
            _local.netns = self._fd

    def run(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        def job() -> T:
            self._enter()
            return fn()
        return self._pool.submit(job)

    def socket(self, family: int) -> concurrent.futures.Future[socket.socket]:
        def make() -> socket.socket:
            s = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            s.setblocking(False)
            return s
        return self.run(make)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
