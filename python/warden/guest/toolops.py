"""Worker ops of the tool layer: commands, files and functions inside a long-lived sandbox.

They run inside the sandbox, as its user, so the kernel already confines them; on top of that
every path is opened beneath the workspace by the one rule of warden.wire.paths (``..``,
absolute paths and symbolic links anywhere on the way are refused with PathEscapeError), so
that a caller gets a clear error instead of a file from somewhere else in the sandbox. A file
op that fails raises SandboxFileError, which the worker reports with origin "warden", its
errno and the path as given.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from warden.errors import ProtocolError
from warden.guest import command, emit, fileops, files, procops
from warden.guest.cmdargs import WORKSPACE, command_cwd, command_env
from warden.wire import ops
from warden.wire.codec import DEFAULT_MAX_FRAME
from warden.wire.replies import exec_output_cap

__all__ = ["OPS", "WORKSPACE"]



def op_exec(msg: dict, fds: list[int], used: set[int]) -> dict:
    """Run a command until its own process exits (warden.guest.command). Each of stdout and
    stderr keeps at most ``max_output`` bytes (clamped so that both fit one reply frame);
    the rest is counted in ``*_dropped``."""
    argv = msg.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ProtocolError("exec needs 'argv', a non-empty list of strings")
    asked = msg.get("max_output")
    if asked is not None and (type(asked) is not int or asked < 0):
        raise ProtocolError("exec 'max_output' must be a whole number of bytes or nil")
    cap = exec_output_cap(DEFAULT_MAX_FRAME, asked)
    stream_cap = msg.get("stream_cap") if msg.get("stream") else 0
    if type(stream_cap) is not int or stream_cap < 0:
        raise ProtocolError("exec 'stream_cap' must be a whole number of bytes")
    try:
        done = command.run(argv, stdin=msg.get("stdin"), cwd=command_cwd(msg.get("cwd")),
                           env=command_env(msg), timeout=msg.get("timeout"), cap=cap,
                           on_chunk=emit.emit if stream_cap else None, stream_cap=stream_cap)
    except OSError as exc:
        if exc.filename != argv[0] or exc.errno is None:
            raise  # not the command's exec (a missing working directory): a real failure
        return _not_executed(argv[0], exc.errno)
    rc = os.waitstatus_to_exitcode(done.wait_status)
    # The writable area is one tmpfs: full means the quota was reached.
    st = os.statvfs(WORKSPACE if os.path.isdir(WORKSPACE) else "/tmp")
    return {"exit_code": rc if rc >= 0 else None, "signal": -rc if rc < 0 else None,
            "disk_full": st.f_bfree == 0, "timed_out": done.timed_out,
            "stdout": done.stdout, "stderr": done.stderr,
            "stdout_truncated": done.stdout_dropped > 0,
            "stderr_truncated": done.stderr_dropped > 0,
            "stdout_dropped": done.stdout_dropped, "stderr_dropped": done.stderr_dropped,
            "max_rss_bytes": done.max_rss_bytes, "cpu_user_s": done.cpu_user_s,
            "cpu_system_s": done.cpu_system_s}


def _not_executed(name: str, err: int) -> dict:
    """What a shell does for a command it cannot exec, as warden-init does for warden.run:
    127 when it is not there, 126 when it cannot be run, and one line on its stderr."""
    missing = err in (errno.ENOENT, errno.ENOTDIR)
    why = "command not found" if missing and "/" not in name else os.strerror(err)
    return {"exit_code": 127 if missing else 126, "signal": None, "disk_full": False,
            "stdout": b"", "stderr": os.fsencode(f"warden: {name}: {why}\n"),
            "timed_out": False, "stdout_truncated": False, "stderr_truncated": False,
            "stdout_dropped": 0, "stderr_dropped": 0, "max_rss_bytes": 0}


def op_write_file(msg: dict, fds: list[int], used: set[int]) -> None:
    data = msg.get("data")
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError("write_file needs 'data' as bytes")
    files.write_file(WORKSPACE, msg.get("path"), data)


def op_read_file(msg: dict, fds: list[int], used: set[int]) -> bytes:
    return files.read_file(WORKSPACE, msg.get("path"))


def op_list_files(msg: dict, fds: list[int], used: set[int]) -> list[dict]:
    return files.list_files(WORKSPACE, msg.get("path") or ".")


def op_remove_file(msg: dict, fds: list[int], used: set[int]) -> None:
    files.remove_file(WORKSPACE, msg.get("path"))


_FUNCTIONS: dict[str, Any] = {}


def op_call_fn(msg: dict, fds: list[int], used: set[int]) -> Any:
    """Call a function by name, defining it first from ``source`` when given. Definitions
    persist for the worker's life, so later calls may name them alone."""
    source, name = msg.get("source"), msg.get("name")
    if source is not None:
        if not isinstance(source, str):
            raise ProtocolError("call_fn 'source' must be a string")
        before = dict(_FUNCTIONS)
        exec(compile(source, "<warden call>", "exec"), _FUNCTIONS)
        if name is None:
            # What the source bound anew, redefinitions of an earlier name included.
            new = [k for k, v in _FUNCTIONS.items() if before.get(k) is not v and callable(v)
                   and not k.startswith("__")]
            if len(new) != 1:
                raise ProtocolError("source must define exactly one function, or name it")
            name = new[0]
    fn = _FUNCTIONS.get(name) if isinstance(name, str) else None
    if not callable(fn):
        raise NameError(f"no function {name!r} is defined in this sandbox")
    return fn(msg.get("payload"))  # an async def's coroutine is awaited by the worker loop


OPS = {ops.EXEC: op_exec, ops.WRITE_FILE: op_write_file, ops.READ_FILE: op_read_file,
       ops.LIST_FILES: op_list_files, ops.REMOVE_FILE: op_remove_file, ops.CALL_FN: op_call_fn,
       **procops.OPS, **fileops.OPS}
