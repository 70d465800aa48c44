"""Sockets made in other network namespaces, used from the host.

A socket belongs for its whole life to the network namespace of the thread that made it
(socket(7), network_namespaces(7)); it can then be used from any thread. So warden makes the
listener a sandbox sees as its proxy inside the sandbox's namespace (on a visiting thread),
and the sockets it dials out with inside the egress namespace (on the egress loop's own
thread, which enters the namespace for the one socket(2) call and comes back), with
setns(2) (CLONE_NEWNET), and does all the I/O from the host's event loop.

Python 3.11 has no os.setns: the libc call is made through ctypes.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from warden.errors import SandboxSetupError
from warden.host.net import local

__all__ = ["Dialer", "here", "in_netns", "listener", "new_netns", "open_netns", "visit"]

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


def here(fd: int, fn: Callable[[], T], home: int | None = None) -> T:
    """``fn()`` run on the calling thread inside the network namespace ``fd``: setns(2) there
    and back (some 20 us here with the open and close of the way home), for a socket that must belong to
    that namespace without handing work to another thread. The thread comes back or the
    process ends: it would otherwise go on in the wrong namespace. ``home``: a descriptor of
    the calling thread's own namespace, kept by a caller that comes often from one thread;
    else one is opened for the call (kept per thread, it would outlive the thread)."""
    mine = home is None
    if home is None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
        try:
            return fn()
        finally:
            try:
                _setns(home)
            except OSError:
                os._exit(70)
    finally:
        if mine:
            os.close(home)


class Dialer:
    """Sockets made, and names resolved, inside one egress namespace (None: warden's own).

    The sockets the proxy dials with are made on the calling thread (the egress loop's), which
    enters the namespace for the one system call (``here``): no thread hand-off on the path of
    a connection. Whether an address is the namespace's own is asked over a netlink socket of
    the namespace (``local``). Lookups run on resolver threads that enter the namespace once
    and stay (``resolve``), one started whenever none is idle, so a lookup never waits for a
    thread another lookup holds; how many are in flight is bounded per sandbox by its caller
    (egress.Attachment.resolve). ``close`` ends them and releases the namespace."""

    def __init__(self, netns_path: str | None) -> None:
        self.path = netns_path
        self._fd = open_netns(netns_path) if netns_path is not None else None
        self._resolvers = _Threads(self._enter)
        self._home: tuple[int, int] | None = None  # (thread, its namespace) for socket()
        try:
            # setns(2) refuses a descriptor that is not a network namespace (EINVAL), and
            # one warden may not enter (EPERM): found here, before any sandbox relies on it.
            self.local = self._in_ns(local.LocalRoutes)
        except OSError as exc:
            self.close()
            raise SandboxSetupError("egress network namespace", exc.errno or errno.EINVAL,
                                    "entering NetworkPolicy.egress_netns") from None

    def _enter(self) -> None:
        if self._fd is not None and getattr(_local, "netns", None) != self._fd:
            _setns(self._fd)
            _local.netns = self._fd

    def _in_ns(self, fn: Callable[[], T]) -> T:
        return fn() if self._fd is None else here(self._fd, fn)

    def resolve(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """``fn()`` (a lookup) on a resolver thread inside the namespace, started at once."""
        def job() -> T:
            self._enter()
            return fn()
        return self._resolvers.submit(job)

    def socket(self, family: int) -> socket.socket:
        """A new non-blocking TCP socket of the namespace. The way home of the thread that
        asks (the egress loop's) is kept while the dialer lives."""
        if self._fd is None:
            return _tcp(family)
        me = threading.get_ident()
        if self._home is None:
            self._home = (me, os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
        home = self._home[1] if self._home[0] == me else None
        return here(self._fd, lambda: _tcp(family), home)

    def close(self) -> None:
        self._resolvers.close()
        if self._home is not None:
            os.close(self._home[1])
            self._home = None
        if getattr(self, "local", None) is not None:
            self.local.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _tcp(family: int) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.setblocking(False)
    return s


class _Threads:
    """Threads that run one job each at a time, a new one started whenever none is idle (the
    callers bound how many jobs are in flight); an idle thread ends after IDLE_S."""

    IDLE_S = 30.0

    def __init__(self, enter: Callable[[], None]) -> None:
        self._enter = enter
        self._idle: list[queue.SimpleQueue] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the resolver threads are closed")
            inbox = self._idle.pop() if self._idle else None
        if inbox is not None:
            inbox.put((fn, fut))
        else:
            inbox = queue.SimpleQueue()
            inbox.put((fn, fut))
            threading.Thread(target=self._serve, args=(inbox,), name="warden-resolve",
                             daemon=True).start()
        return fut

    def _serve(self, inbox: queue.SimpleQueue) -> None:
        while True:
            try:
                job = inbox.get(timeout=self.IDLE_S)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:
                        self._idle.remove(inbox)
                        return
                job = inbox.get()  # handed a job as it timed out
            if job is None:
                return
            fn, fut = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # handed to the waiter, as an executor does
                    fut.set_exception(exc)
            with self._lock:
                if self._closed:
                    return
                self._idle.append(inbox)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(None)
