"""warden.AsyncProcess and warden.AsyncTerminal: a Process and a Terminal for asyncio.

Every request runs on warden's own thread pool (``run``), never on the event loop; waiting
between reads that found nothing is an ``asyncio.sleep``, so a thousand idle processes
being read cost the loop nothing but timers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import signal as signals
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from warden.errors import TimeoutExceeded
from warden.sandboxes import checks
from warden.sandboxes.process import BACKOFF_S, Collected, Process
from warden.sandboxes.terminal import Terminal
from warden.spec.result import ExecResult

__all__ = ["AsyncProcess", "AsyncTerminal", "run"]

_T = TypeVar("_T")
# Requests of all async sandboxes of this process: enough threads that many concurrent
# tasks are not queued behind one another for long, few enough to stay cheap.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="warden-async")


async def run(fn: Callable[..., _T], *args: object, **kwargs: object) -> _T:
    """``fn(*args, **kwargs)`` on warden's thread pool, awaited."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, functools.partial(fn, *args, **kwargs))


class AsyncProcess:
    """A background process of an AsyncSandbox: the methods of warden.Process as
    coroutines, ``output`` an async iterator."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def argv(self) -> list[str]:
        return self._proc.argv

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def __repr__(self) -> str:
        return f"<warden.{type(self).__name__} pid={self.pid} returncode={self.returncode}>"

    async def write(self, data: bytes | str) -> None:
        await run(self._proc.write, data)

    async def close_stdin(self) -> None:
        await run(self._proc.close_stdin)

    async def kill(self, signal: int = signals.SIGKILL) -> None:
        await run(self._proc.kill, signal)

    async def poll(self) -> int | None:
        return await run(self._proc.poll)

    async def _rounds(self, deadline: float | None) -> AsyncIterator[list[tuple[str, bytes]]]:
        """As Process._chunks, with the waits between empty rounds on the event loop."""
        pause = 0.005
        while True:
            chunks = await run(self._proc._step, deadline)
            if chunks is None:
                return
            if chunks:
                pause = 0.005
                yield chunks
                continue
            if deadline is not None and time.monotonic() >= deadline:
                yield []
                continue
            await asyncio.sleep(pause if deadline is None else
                                max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(BACKOFF_S, pause * 2)

    async def output(self, timeout: float | None = None) -> AsyncIterator[tuple[str, bytes]]:
        """``(stream, bytes)`` chunks as they come, until the process has ended and all was
        given; TimeoutExceeded when ``timeout`` seconds pass first (it runs on)."""
        limit = checks.timeout_s(timeout) if timeout is not None else None
        deadline = None if limit is None else time.monotonic() + limit
        async for chunks in self._rounds(deadline):
            if not chunks:
                raise TimeoutExceeded(f"process {self.pid} did not end within {limit:g}s; it "
                                      "runs on")
            for chunk in chunks:
                yield chunk

    async def wait(self, timeout: float | None = None) -> ExecResult:
        kept = Collected(self._proc._keep)
        async for stream, data in self.output(timeout):
            kept.add(stream, data)
        return kept.result(self._proc._exit, time.monotonic() - self._proc._t0)


class AsyncTerminal(AsyncProcess):
    """A terminal of an AsyncSandbox: warden.Terminal's methods as coroutines."""

    _proc: Terminal

    async def read(self, timeout: float | None = None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        async for chunks in self._rounds(deadline):
            return b"".join(d for _, d in chunks)
        return b""

    async def resize(self, cols: int, rows: int) -> None:
        await run(self._proc.resize, cols, rows)

    async def close(self) -> None:
        await run(self._proc.close)
