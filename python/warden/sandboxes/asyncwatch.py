"""warden.AsyncWatch: ``AsyncSandbox.watch``'s events as an async iterator.

It is a warden.Watch read on warden's thread pool, with the waits between empty reads on
the event loop (as warden.AsyncProcess reads a process), so an idle watch costs the loop
nothing but timers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from warden.errors import CallFailed, ProcessNotFound
from warden.sandboxes.asyncproc import AsyncProcess, run
from warden.sandboxes.watch import Watch, WatchEvent

__all__ = ["AsyncWatch"]


class AsyncWatch:
    """``async for event in watch``: the WatchEvents of a warden.Watch; ``await
    watch.close()`` (or ``async with``) stops it, and closing the sandbox ends the
    iteration."""

    def __init__(self, watch: Watch) -> None:
        self._watch = watch
        self.path = watch.path

    async def _events(self) -> AsyncIterator[WatchEvent]:
        w = self._watch
        try:
            async for chunks in AsyncProcess(w._proc)._rounds(None):
                for rec in w.take(chunks):
                    ev = w.event(rec)
                    if ev is None:
                        return
                    yield ev
        except (CallFailed, ProcessNotFound) as exc:
            if not w.ended(exc):
                raise
        finally:
            await self.close()

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self._events()

    async def close(self) -> None:
        await run(self._watch.close)

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
