"""Ports of a sandbox offered on the host: ``expose(port)`` listens on 127.0.0.1 in warden's
own network namespace and forwards each connection to 127.0.0.1:``port`` inside the sandbox,
through a socket warden makes in the sandbox's namespace. Ingress: not egress, so neither
logged nor charged to the sandbox's budgets. Gone with unexpose or with the sandbox."""

from __future__ import annotations

import asyncio
import socket

from warden.host.net import netns, proxy
from warden.host.net.egress import Attachment

__all__ = ["expose", "unexpose"]


def _inner() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.setblocking(False)
    return s


async def _forward(att: Attachment, port: int, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
    task = asyncio.current_task()
    assert task is not None
    att._tasks.add(task)
    loop = asyncio.get_running_loop()
    try:
        sock = await asyncio.wrap_future(netns.visit(att.netns_fd, _inner))
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)),
                                   proxy.DIAL_TIMEOUT_S)
            inner = await asyncio.open_connection(sock=sock, limit=proxy.CHUNK)
        except (OSError, asyncio.TimeoutError):
            sock.close()
            return
        await proxy.relay(att, None, (reader, writer), inner)
    finally:
        writer.close()
        att._tasks.discard(task)


async def _expose(att: Attachment, port: int) -> str:
    if port in att.exposed:
        return att.exposed[port][1]
    server = await asyncio.start_server(lambda r, w: _forward(att, port, r, w), "127.0.0.1", 0)
    where = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    att.exposed[port] = (server, where)
    return where


async def _unexpose(att: Attachment, port: int) -> None:
    got = att.exposed.pop(port, None)
    if got is not None:
        got[0].close()
        await got[0].wait_closed()


def expose(att: Attachment, port: int) -> str:
    """"127.0.0.1:NNNNN" on the host, forwarding to ``port`` inside the sandbox."""
    return att.service.call(lambda: _expose(att, port))


def unexpose(att: Attachment, port: int) -> None:
    att.service.call(lambda: _unexpose(att, port))
