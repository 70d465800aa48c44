"""The native provider's file operations: through the worker, or on the host beneath a
read-only workspace that the sandbox only reads, under the same path rule either way."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from warden.errors import SandboxFileError
from warden.guest import files
from warden.providers.base import SandboxHandle
from warden.providers.errors import sandbox_error
from warden.providers.native.state import state_of
from warden.wire import ops
from warden.wire.paths import check_relative
from warden.wire.replies import parse_bytes, parse_entries

__all__ = ["FilesMixin"]

# The tool layer's file ops, run on the host for a read-only workspace: the same functions
# the worker runs inside, under the same path rule.
_HOST_FILE_OPS: dict[str, Callable[..., object]] = {
    ops.WRITE_FILE: files.write_file, ops.READ_FILE: files.read_file,
    ops.LIST_FILES: files.list_files, ops.REMOVE_FILE: files.remove_file}



class FilesMixin:
    """File ops of NativeProvider; ``_call`` is the provider's request to the worker."""

    _call: Callable[..., object]
    _parse: Callable[..., Any]

    def _files(self, handle: SandboxHandle, op: str, path: str, **fields: object) -> object:
        """A file op: on the host, beneath a read-only workspace that the sandbox only
        reads; else through the worker. The path goes as the caller gave it (checked here
        first), so that an error names it as given."""
        check_relative(path)
        root = state_of(handle).host_ws
        if root is None:
            return self._call(handle, op, {"path": path, **fields}, path=path)
        try:
            return _HOST_FILE_OPS[op](root, path, **fields)
        except SandboxFileError as exc:
            err = sandbox_error(exc, handle, op, path=path)
            raise err from err.__cause__

    def write_file(self, handle: SandboxHandle, path: str, data: bytes) -> None:
        self._files(handle, ops.WRITE_FILE, path, data=bytes(data))

    def read_file(self, handle: SandboxHandle, path: str) -> bytes:
        return self._parse(handle, parse_bytes, self._files(handle, ops.READ_FILE, path),
                           "the file's content")

    def list_files(self, handle: SandboxHandle, path: str = ".") -> builtins.list[str]:
        return [e["name"] for e in self._parse(handle, parse_entries,
                                               self._files(handle, ops.LIST_FILES, path))]

    def remove_file(self, handle: SandboxHandle, path: str) -> None:
        self._files(handle, ops.REMOVE_FILE, path)
