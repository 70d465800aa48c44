"""Sockets made in another network namespace from the calling thread, and resolver threads
that never make one lookup wait for another."""

from __future__ import annotations

import fcntl
import os
import socket
import threading

from warden.host.net import netns

from tests.conftest import require

SIOCGSKNS = 0x894C


def _ns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _ns_of(sock: socket.socket) -> int:
    """The namespace a socket belongs to (SIOCGSKNS, socket(7))."""
    nsfd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    try:
        return os.fstat(nsfd).st_ino
    finally:
        os.close(nsfd)


def test_a_socket_made_here_belongs_to_the_namespace_and_the_thread_comes_back():
    require(os.geteuid() == 0, "making a network namespace needs root")
    fd = netns.new_netns()
    try:
        home = _ns()
        s = netns.here(fd, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        assert _ns() == home
        with s:
            assert _ns_of(s) == os.fstat(fd).st_ino
        with socket.socket() as mine:
            assert _ns_of(mine) == home
    finally:
        os.close(fd)


def test_a_lookup_never_waits_for_a_thread_another_lookup_holds():
    dialer = netns.Dialer(None)
    release = threading.Event()
    try:
        stuck = [dialer.resolve(lambda: release.wait(60)) for _ in range(8)]
        assert dialer.resolve(lambda: "answered").result(timeout=10) == "answered"
        assert not any(f.done() for f in stuck)
    finally:
        release.set()
        dialer.close()
