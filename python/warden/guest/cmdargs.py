"""Where and with what environment a command runs in the sandbox: ``exec`` and ``spawn``
alike."""

from __future__ import annotations

import errno
import os
import stat

from warden.errors import ProtocolError, sandbox_file_error

__all__ = ["WORKSPACE", "command_cwd", "command_env"]

WORKSPACE = "/workspace"


def command_env(msg: dict) -> dict[str, str] | None:
    """The command's environment: ``env`` (the sandbox's; None: the worker's own) with
    ``env_add`` on top."""
    env, add = msg.get("env"), msg.get("env_add")
    if add is None:
        return env
    if not isinstance(add, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in add.items()):
        raise ProtocolError("'env_add' must map names to strings")
    return {**(os.environ if env is None else env), **add}


def command_cwd(cwd: object) -> str:
    """The command's working directory: the workspace by default, else ``cwd``, which must
    be a directory in the sandbox (FileNotFoundError or NotADirectoryError naming it)."""
    if cwd is None:
        return WORKSPACE
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise ProtocolError("'cwd' must be an absolute path")
    try:
        st = os.stat(cwd)
    except OSError as exc:
        raise sandbox_file_error(exc.errno or errno.ENOENT, cwd) from None
    if not stat.S_ISDIR(st.st_mode):
        raise sandbox_file_error(errno.ENOTDIR, cwd)
    return cwd
