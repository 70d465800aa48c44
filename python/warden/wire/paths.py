"""The one rule that keeps a path given for a sandbox's area inside that area: relative, no
NUL, no '..' (lexically, here), and no symbolic link followed on the way (where it is opened).
The host and the guest check with the same code."""

from __future__ import annotations

from warden.errors import PathEscapeError

__all__ = ["check_relative"]


def check_relative(path: object) -> str:
    """A workspace-relative path with no way out, lexically: the host checks it too."""
    if not isinstance(path, str) or "\0" in path:
        raise PathEscapeError(f"path must be a string without NUL bytes, got {path!r}")
    if path.startswith("/"):
        raise PathEscapeError(f"path {path!r} is absolute; give a path relative to the workspace")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathEscapeError(f"path {path!r} climbs out of the workspace with '..'")
    return "/".join(parts) or "."
