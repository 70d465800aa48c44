"""warden.AsyncSandbox: the methods of warden.Sandbox as coroutines, for asyncio programs.

Nothing here blocks the event loop: every request to the sandbox runs on warden's thread pool
(warden.sandboxes.asyncproc.run), and the waits between reads are asyncio sleeps.

``exec`` runs its command as a background process of the sandbox (the machinery of
``spawn``), read while it runs: so other requests of the same sandbox go on meanwhile, and
cancelling the awaiting task kills the command and what it started (its process group). Its
ExecResult carries the command's exit, output and wall time; the cgroup's view of that one
command (peak memory, limits reached) is what ``Sandbox.exec`` adds and this one does not.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import IO, Any

from warden.errors import ProcessNotFound, ProcessStdinClosed, TimeoutExceeded
from warden.sandboxes import checks
from warden.sandboxes.asyncproc import AsyncProcess, AsyncTerminal, run
from warden.sandboxes.asyncwatch import AsyncWatch
from warden.sandboxes.notebook import Execution
from warden.sandboxes.process import Collected, ProcessInfo
from warden.sandboxes.sandbox import Sandbox
from warden.spec.network import NetworkEvent, NetworkPolicy
from warden.spec.result import ExecResult, exec_output_cap
from warden.wire.entries import Entry
from warden.wire.streams import DEFAULT_STREAM_CAP

__all__ = ["AsyncFiles", "AsyncSandbox"]

Callback = Callable[[bytes], object | Awaitable[object]]


class AsyncFiles:
    """The workspace of an AsyncSandbox: warden.Files' methods as coroutines."""

    def __init__(self, box: AsyncSandbox) -> None:
        self._box = box

    async def write(self, path: str, data: bytes | str) -> None:
        await run(self._box._sync().files.write, path, data)

    async def read(self, path: str) -> bytes:
        return await run(self._box._sync().files.read, path)

    async def list(self, path: str = ".") -> list[str]:
        return await run(self._box._sync().files.list, path)

    async def remove(self, path: str) -> None:
        await run(self._box._sync().files.remove, path)

    async def stat(self, path: str) -> Entry:
        return await run(self._box._sync().files.stat, path)

    async def mkdir(self, path: str, parents: bool = True) -> None:
        await run(self._box._sync().files.mkdir, path, parents)

    async def rename(self, src: str, dst: str) -> None:
        await run(self._box._sync().files.rename, src, dst)

    async def entries(self, path: str = ".", recursive: bool = False) -> builtins.list[Entry]:
        return await run(self._box._sync().files.entries, path, recursive)

    async def upload(self, src: str | os.PathLike[str] | IO[bytes], path: str) -> int:
        return await run(self._box._sync().files.upload, src, path)

    async def download(self, path: str, dst: str | os.PathLike[str] | IO[bytes]) -> int:
        return await run(self._box._sync().files.download, path, dst)


class AsyncSandbox:
    """A sandbox for asyncio: ``async with warden.AsyncSandbox(...) as sb`` (or ``sb = await
    warden.AsyncSandbox.create(...)``) takes Sandbox's arguments; its methods are Sandbox's,
    awaited."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._box: Sandbox | None = None
        self.files = AsyncFiles(self)

    @classmethod
    async def create(cls, *args: Any, **kwargs: Any) -> AsyncSandbox:
        box = cls(*args, **kwargs)
        await box.start()
        return box

    async def start(self) -> None:
        """Make the sandbox (on the thread pool); nothing when it is made already."""
        if self._box is None:
            self._box = await run(Sandbox, *self._args, **self._kwargs)

    def _sync(self) -> Sandbox:
        if self._box is None:
            raise RuntimeError("the AsyncSandbox is not started: use 'async with' or "
                               "'await AsyncSandbox.create(...)'")
        return self._box

    @property
    def id(self) -> str:
        return self._sync().id

    @property
    def labels(self) -> dict[str, str]:
        return self._sync().labels

    async def exec(self, argv: Sequence[str], *, stdin: bytes | str | None = None,
                   timeout: float | None = None, env: Mapping[str, str] | None = None,
                   cwd: str | None = None, on_stdout: Callback | None = None,
                   on_stderr: Callback | None = None,
                   max_output_bytes: int | None = None) -> ExecResult:
        """Sandbox.exec, awaited; a callback may be a coroutine function. Cancelling the
        task kills the command's process group; at ``timeout`` the command is killed and
        the result's reason is "timeout"."""
        box = self._sync()
        args, data = checks.argv_list(argv), checks.stdin_bytes(stdin)
        limit = checks.timeout_s(timeout) or box.spec.limits.wall_time_s
        callbacks = {"stdout": checks.callback(on_stdout, "on_stdout"),
                     "stderr": checks.callback(on_stderr, "on_stderr")}
        cap = checks.output_cap(max_output_bytes)
        t0 = time.monotonic()
        proc = await self.spawn(args, env=env, cwd=cwd, stdin=data is not None)
        feeding = asyncio.ensure_future(_feed(proc, data)) if data is not None else None
        kept = Collected(exec_output_cap(box.spec.limits.memory_mb, cap))
        try:
            await _pump(proc, limit, kept, callbacks,
                        DEFAULT_STREAM_CAP if cap is None else cap)
        except TimeoutExceeded:
            await _kill(proc)
            return kept.result(None, time.monotonic() - t0, timed_out=True)
        except BaseException:
            # Cancelled, or a callback raised: the command goes with the call.
            await asyncio.shield(_kill(proc))
            raise
        finally:
            if feeding is not None:
                feeding.cancel()
        return kept.result(proc._proc._exit, time.monotonic() - t0)

    async def run_python(self, code: str, timeout: float | None = None) -> ExecResult:
        return await run(self._sync().run_python, code, timeout)

    async def run_code(self, code: str, *, context: str = "default",
                       timeout: float | None = None) -> Execution:
        return await run(self._sync().run_code, code, context=context, timeout=timeout)

    async def contexts(self) -> list[str]:
        return self._sync().contexts()

    async def reset_context(self, name: str) -> None:
        await run(self._sync().reset_context, name)

    async def call(self, fn_source_or_name: str, payload: object = None,
                   timeout: float | None = None) -> object:
        return await run(self._sync().call, fn_source_or_name, payload, timeout)

    async def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                    cwd: str | None = None, stdin: bool = True) -> AsyncProcess:
        return AsyncProcess(await run(self._sync().spawn, argv, env=env, cwd=cwd, stdin=stdin))

    async def watch(self, path: str = ".", recursive: bool = True) -> AsyncWatch:
        """Sandbox.watch, awaited: ``async for event in await sb.watch("src")``."""
        return AsyncWatch(await run(self._sync().watch, path, recursive))

    async def processes(self) -> list[ProcessInfo]:
        return await run(self._sync().processes)

    async def attach(self, pid: int) -> AsyncProcess:
        return AsyncProcess(await run(self._sync().attach, pid))

    async def terminal(self, argv: Sequence[str] | None = None, *, cols: int = 80,
                       rows: int = 24, env: Mapping[str, str] | None = None,
                       cwd: str | None = None) -> AsyncTerminal:
        return AsyncTerminal(await run(self._sync().terminal, argv, cols=cols, rows=rows,
                                       env=env, cwd=cwd))

    async def set_network(self, network: str | NetworkPolicy) -> None:
        await run(self._sync().set_network, network)

    async def network_log(self) -> list[NetworkEvent]:
        return await run(self._sync().network_log)

    async def expose(self, port: int) -> str:
        return await run(self._sync().expose, port)

    async def unexpose(self, port: int) -> None:
        await run(self._sync().unexpose, port)

    async def pause(self, *, reclaim: bool = False) -> int:
        """Sandbox.pause, awaited."""
        return await run(self._sync().pause, reclaim=reclaim)

    async def resume(self) -> None:
        await run(self._sync().resume)

    @property
    def paused(self) -> bool:
        return self._sync().paused

    async def close(self) -> None:
        if self._box is not None:
            await run(self._box.close)

    async def __aenter__(self) -> AsyncSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _feed(proc: AsyncProcess, data: bytes | None) -> None:
    """The command's stdin, written as it reads, then closed; a command that ends first
    just does not get the rest."""
    try:
        if data:
            await proc.write(data)
        await proc.close_stdin()
    except (ProcessStdinClosed, ProcessNotFound):
        pass


async def _pump(proc: AsyncProcess, limit: float, kept: Collected,
                callbacks: dict[str, Callback | None], stream_cap: int) -> None:
    streamed = {"stdout": 0, "stderr": 0}
    async for stream, chunk in proc.output(limit):
        kept.add(stream, chunk)
        callback = callbacks[stream]
        piece = chunk[:max(0, stream_cap - streamed[stream])]
        if callback is None or not piece:
            continue
        streamed[stream] += len(piece)
        got = callback(piece)
        if inspect.isawaitable(got):
            await got


async def _kill(proc: AsyncProcess) -> None:
    try:
        await proc.kill()
    except ProcessNotFound:
        pass  # ended and forgotten already
