"""Worker ops of the tool layer: commands, files and functions inside a long-lived sandbox.

They run inside the sandbox, as its user, so the kernel already confines them; on top of that
every path is checked to stay inside the workspace (``..``, absolute paths and symlinks that
lead out are refused with PathEscapeError) so that a caller gets a clear error instead of a
file from somewhere else in the sandbox.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
from typing import Any

from warden.errors import PathEscapeError, ProtocolError
from warden.wire.paths import check_relative

__all__ = ["OPS", "WORKSPACE", "check_relative"]

WORKSPACE = "/workspace"
OUTPUT_CAP = 8 << 20


def _inside(path: str, root: str) -> str:
    rel = check_relative(path)
    full = os.path.join(root, rel)
    real = os.path.realpath(full)
    if real != root and not real.startswith(root + "/"):
        raise PathEscapeError(f"path {path!r} resolves to {real}, outside the workspace "
                              "(through a symbolic link)")
    return real


def op_exec(msg: dict, fds: list[int], used: set[int]) -> dict:
    argv = msg.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ProtocolError("exec needs 'argv', a non-empty list of strings")
    timeout = msg.get("timeout")
    stdin = msg.get("stdin")
    cwd = msg.get("cwd") or WORKSPACE
    env = msg.get("env")
    # A new session, so that a timeout kills the whole group the command started.
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
    except OSError as exc:
        if exc.filename != argv[0] or exc.errno is None:
            raise  # not the command's exec (a missing working directory): a real failure
        return _not_executed(argv[0], exc.errno)
    timed_out = False
    try:
        out, err = proc.communicate(stdin or b"", timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    rc = proc.returncode
    # The writable area is one tmpfs: full means the quota was reached.
    st = os.statvfs(WORKSPACE if os.path.isdir(WORKSPACE) else "/tmp")
    return {"exit_code": rc if rc >= 0 else None, "signal": -rc if rc < 0 else None,
            "disk_full": st.f_bfree == 0,
            "stdout": out[:OUTPUT_CAP], "stderr": err[:OUTPUT_CAP], "timed_out": timed_out,
            "stdout_truncated": len(out) > OUTPUT_CAP, "stderr_truncated": len(err) > OUTPUT_CAP}


def _not_executed(name: str, err: int) -> dict:
    """What a shell does for a command it cannot exec, as warden-init does for warden.run:
    127 when it is not there, 126 when it cannot be run, and one line on its stderr."""
    missing = err in (errno.ENOENT, errno.ENOTDIR)
    why = "command not found" if missing and "/" not in name else os.strerror(err)
    return {"exit_code": 127 if missing else 126, "signal": None, "disk_full": False,
            "stdout": b"", "stderr": os.fsencode(f"warden: {name}: {why}\n"),
            "timed_out": False, "stdout_truncated": False, "stderr_truncated": False}


def op_write_file(msg: dict, fds: list[int], used: set[int]) -> None:
    data = msg.get("data")
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError("write_file needs 'data' as bytes")
    rel = check_relative(msg.get("path"))
    parent = _inside(os.path.dirname(rel) or ".", WORKSPACE)
    os.makedirs(parent, exist_ok=True)
    # O_NOFOLLOW: a symlink planted at the final component is refused, not followed.
    fd = os.open(os.path.join(parent, os.path.basename(rel)),
                 os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def op_read_file(msg: dict, fds: list[int], used: set[int]) -> bytes:
    path = _inside(msg.get("path"), WORKSPACE)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def op_list_files(msg: dict, fds: list[int], used: set[int]) -> list[dict]:
    path = _inside(msg.get("path") or ".", WORKSPACE)
    out = []
    for e in sorted(os.scandir(path), key=lambda e: e.name):
        st = e.stat(follow_symlinks=False)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
        out.append({"name": e.name, "type": kind, "size": st.st_size})
    return out


def op_remove_file(msg: dict, fds: list[int], used: set[int]) -> None:
    rel = check_relative(msg.get("path"))
    if rel == ".":
        raise PathEscapeError("refusing to remove the workspace itself")
    parent = _inside(os.path.dirname(rel) or ".", WORKSPACE)
    target = os.path.join(parent, os.path.basename(rel))
    if os.path.isdir(target) and not os.path.islink(target):
        import shutil

        shutil.rmtree(target)
    else:
        os.unlink(target)


_FUNCTIONS: dict[str, Any] = {}


def op_call_fn(msg: dict, fds: list[int], used: set[int]) -> Any:
    """Call a function by name, defining it first from ``source`` when given. Definitions
    persist for the worker's life, so later calls may name them alone."""
    source, name = msg.get("source"), msg.get("name")
    if source is not None:
        if not isinstance(source, str):
            raise ProtocolError("call_fn 'source' must be a string")
        before = dict(_FUNCTIONS)
        exec(compile(source, "<warden call>", "exec"), _FUNCTIONS)  # noqa: S102 - sandboxed
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


OPS = {"exec": op_exec, "write_file": op_write_file, "read_file": op_read_file,
       "list_files": op_list_files, "remove_file": op_remove_file, "call_fn": op_call_fn}
