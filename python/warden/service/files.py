"""The file routes. Bodies stream both ways through Sandbox.files.upload/download in a worker
thread, a chunk at a time: the server holds at most a few MiB of any one transfer, whatever
its size. An upload is bounded by the sandbox's disk (a Content-Length over it is 413 before
a byte is read; a body without one stops at the disk quota, 413). Paths are the sandbox's
rules: relative to the workspace, no ``..``, no link anywhere on the path (400)."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from warden.errors import InvalidArgument, PathEscapeError, sandbox_file_error
from warden.service import bodies
from warden.service.app import Ctx, endpoint, run_sync
from warden.service.problems import ApiError

__all__ = ["ROUTES"]

log = logging.getLogger("warden")

_ONE = "/v1/sandboxes/{id}/files/{path:path}"
_CHUNK = 1 << 20
# A client that neither sends nor takes a byte for this long loses its transfer: each one
# holds a stream thread, and a stalled client must not hold it forever.
IDLE_S = 120.0


class _BodyReader:
    """A binary file object over the request body, read from a worker thread."""

    def __init__(self, request: Request) -> None:
        self._chunks = request.stream().__aiter__()
        self._rest = bytearray()
        self._done = False

    async def _next(self) -> bytes:
        try:
            with anyio.fail_after(IDLE_S):
                return await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""

    def read(self, size: int = _CHUNK) -> bytes:
        size = _CHUNK if size is None or size < 0 else size
        while len(self._rest) < size and not self._done:
            chunk = anyio.from_thread.run(self._next)
            if chunk:
                self._rest += chunk
            else:
                self._done = True
        data = bytes(self._rest[:size])
        del self._rest[:size]
        return data


class _StreamWriter:
    """A binary file object whose writes go to the response, waiting while it is full."""

    def __init__(self, send: MemoryObjectSendStream[bytes]) -> None:
        self._send = send

    async def _send_within(self, data: bytes) -> None:
        with anyio.fail_after(IDLE_S):
            await self._send.send(data)

    def write(self, data: bytes) -> int:
        anyio.from_thread.run(self._send_within, bytes(data))
        return len(data)


@endpoint(_ONE)
async def put_file(request: Request, ctx: Ctx) -> Response:
    live = ctx.sandbox(request)
    path = request.path_params["path"]
    length = request.headers.get("content-length", "")
    disk = live.limits.disk_mb << 20
    if length.isdigit() and int(length) > disk:
        raise ApiError(413, "PayloadTooLarge", f"the body of {length} bytes is over the "
                       f"sandbox's disk of {disk} bytes", size=int(length), limit=disk)
    try:
        size = await run_sync(ctx.streams, live.sandbox.files.upload, _BodyReader(request),
                              path)
    except TimeoutError:
        raise ApiError(408, "RequestTimeout", f"the body stalled: nothing came for "
                       f"{IDLE_S:.0f} s; the file may hold part of what came before") from None
    return JSONResponse({"path": path, "size": size}, status_code=201)


async def _pump(ctx: Ctx, sandbox: Any, path: str,
                send: MemoryObjectSendStream[bytes]) -> None:
    def copy() -> None:
        try:
            sandbox.files.download(path, _StreamWriter(send))
        finally:
            anyio.from_thread.run_sync(send.close)

    await anyio.to_thread.run_sync(copy, limiter=ctx.streams)


def _ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if isinstance(exc, TimeoutError):
            log.info("a download stopped: its client took nothing for %.0f s", IDLE_S)
        elif not isinstance(exc, (anyio.BrokenResourceError, anyio.ClosedResourceError)):
            log.warning("a download stopped: %s", exc)


@endpoint(_ONE)
async def get_file(request: Request, ctx: Ctx) -> Response:
    live = ctx.sandbox(request)
    path = request.path_params["path"]
    entry = await run_sync(ctx.limiter, live.sandbox.files.stat, path)
    if entry.type == "link":
        raise PathEscapeError("the path is a symbolic link; links are not followed", path=path)
    if entry.type != "file":
        raise sandbox_file_error(errno.EISDIR if entry.type == "dir" else errno.EINVAL, path,
                                 op="read")
    send, receive = anyio.create_memory_object_stream[bytes](2)
    task = asyncio.ensure_future(_pump(ctx, live.sandbox, path, send))
    task.add_done_callback(_ended)

    async def body() -> AsyncIterator[bytes]:
        try:
            async with receive:
                async for chunk in receive:
                    yield chunk
            await task  # an error after the last chunk aborts the response: no silent cut
        finally:
            receive.close()

    # No Content-Length: the file may grow or shrink while it is read (chunked encoding).
    return StreamingResponse(body(), media_type="application/octet-stream")


@endpoint(_ONE)
async def delete_file(request: Request, ctx: Ctx) -> Response:
    live = ctx.sandbox(request)
    await run_sync(ctx.limiter, live.sandbox.files.remove, request.path_params["path"])
    return Response(status_code=204)


@endpoint("/v1/sandboxes/{id}/files")
async def list_files(request: Request, ctx: Ctx) -> Response:
    live = ctx.sandbox(request)
    path = request.query_params.get("path", ".")
    recursive = request.query_params.get("recursive", "false").lower()
    if recursive not in ("true", "false", "1", "0"):
        raise InvalidArgument("recursive", recursive, "true or false")
    found = await run_sync(ctx.limiter, live.sandbox.files.entries, path,
                           recursive in ("true", "1"))
    return JSONResponse({"path": path, "entries": [bodies.entry_json(e) for e in found]})


ROUTES = [
    Route(_ONE, put_file, methods=["PUT"]),
    Route(_ONE, get_file, methods=["GET"]),
    Route(_ONE, delete_file, methods=["DELETE"]),
    Route("/v1/sandboxes/{id}/files", list_files, methods=["GET"]),
]
