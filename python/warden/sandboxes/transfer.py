"""Files of any size between the host and a sandbox's workspace, in chunks of CHUNK bytes,
so that memory on both sides stays bounded whatever the size. Each chunk opens the path
beneath the workspace anew (warden.guest.fileops): a link swapped in meanwhile is refused."""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING

from warden.errors import InvalidArgument
from warden.wire import ops
from warden.wire.entries import CHUNK, parse_chunk

if TYPE_CHECKING:
    from warden.sandboxes.sandbox import Sandbox

__all__ = ["download", "upload"]

Local = str | os.PathLike[str] | IO[bytes]


def _tool(box: Sandbox, op: str, args: dict, parse):
    return box._provider.tool_call(box._handle, op, args, parse)


def upload(box: Sandbox, src: Local, path: str) -> int:
    """Copy ``src`` (a local path or a binary file object) to ``path``; bytes copied."""
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as f:
            return upload(box, f, path)
    if not hasattr(src, "read"):
        raise InvalidArgument("src", src, "a local path or a binary file object")
    offset, first = 0, True
    while True:
        data = src.read(CHUNK)
        if not isinstance(data, bytes):
            raise InvalidArgument("src", src, "a file object opened in binary mode")
        if data or first:
            _tool(box, ops.FILE_WRITE_CHUNK, {"path": path, "offset": offset, "data": data,
                                              "create": first}, lambda v: v)
        first = False
        offset += len(data)
        if not data:
            return offset


def download(box: Sandbox, path: str, dst: Local) -> int:
    """Copy the workspace file ``path`` to ``dst`` (a local path or a binary file object);
    bytes copied."""
    if isinstance(dst, (str, os.PathLike)):
        with open(dst, "wb") as f:
            return download(box, path, f)
    if not hasattr(dst, "write"):
        raise InvalidArgument("dst", dst, "a local path or a binary file object")
    offset = 0
    while True:
        data = _tool(box, ops.FILE_READ_CHUNK, {"path": path, "offset": offset, "size": CHUNK},
                     lambda v: parse_chunk(v, CHUNK))
        if not data:
            return offset
        dst.write(data)
        offset += len(data)
