"""warden.Sandbox: a long-lived sandbox with files, commands and Python, for agents' tools."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from warden.spec.limits import Limits
from warden.spec.result import ExecResult
from warden.providers.registry import get_provider
from warden.spec.sandbox import SandboxSpec

__all__ = ["Files", "Sandbox"]


class Files:
    """The sandbox's workspace. Paths are relative to it; ``..``, absolute paths and symlinks
    that lead out are refused with PathEscapeError."""

    def __init__(self, box: Sandbox) -> None:
        self._box = box

    def write(self, path: str, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self._box._provider.write_file(self._box._handle, path, data)

    def read(self, path: str) -> bytes:
        return self._box._provider.read_file(self._box._handle, path)

    def list(self, path: str = ".") -> list[str]:
        return self._box._provider.list_files(self._box._handle, path)

    def remove(self, path: str) -> None:
        self._box._provider.remove_file(self._box._handle, path)


class Sandbox:
    """A sandbox that lives until ``close()``: one worker in its own namespaces and cgroup.

    ``readonly=True`` makes the workspace read-only to the code inside (``files.write`` from
    outside still works). ``labels`` (tenant, project, environment, purpose) are kept for
    listing and reuse; with ``reuse_key`` a live sandbox of the same key and spec is reused.
    """

    def __init__(self, limits: Limits | None = None, network: str = "none",
                 labels: Mapping[str, str] | None = None, readonly: bool = False, *,
                 provider: str = "native", reuse_key: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self._provider = get_provider(provider)
        self.spec = SandboxSpec(limits=limits or Limits(), network=network, readonly=readonly,
                                labels=dict(labels or {}), env=dict(env or {}))
        self._handle = self._provider.create(self.spec, reuse_key=reuse_key)
        self.files = Files(self)

    @property
    def id(self) -> str:
        return self._handle.id

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._handle.labels)

    def exec(self, argv: Sequence[str], stdin: bytes | str | None = None,
             timeout: float | None = None) -> ExecResult:
        if isinstance(stdin, str):
            stdin = stdin.encode()
        return self._provider.exec(self._handle, list(argv), stdin=stdin, timeout=timeout)

    def run_python(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run ``code`` in a fresh interpreter inside the sandbox: a timeout or a crash ends
        that interpreter, never the sandbox."""
        return self.exec([sys.executable, "-I", "-c", code], timeout=timeout)

    def call(self, fn_source_or_name: str, payload: object = None,
             timeout: float | None = None) -> object:
        """Call a function inside the sandbox: pass its source (``def f(x): ...``) the first
        time, then its name alone. A timeout kills the sandbox (TimeoutExceeded)."""
        is_source = "\n" in fn_source_or_name or fn_source_or_name.lstrip().startswith(
            ("def ", "async def ", "import ", "from "))
        args = {"payload": payload}
        if is_source:
            args["source"] = fn_source_or_name
        else:
            args["name"] = fn_source_or_name
        return self._provider.call(self._handle, "call_fn", args, timeout=timeout)

    def close(self) -> None:
        self._provider.destroy(self._handle)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
