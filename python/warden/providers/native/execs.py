"""The native provider's commands: ``exec`` (streamed or not) and the tool ops of background
processes, each through the sandbox's worker under the sandbox's lock."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from warden.errors import MemoryLimitExceeded
from warden.providers.base import OutputCallbacks, SandboxHandle
from warden.providers.execs import During, exec_result, output_cap
from warden.providers.native import network
from warden.providers.native.state import state_of
from warden.spec.result import ExecResult
from warden.wire import ops
from warden.wire.streams import DEFAULT_STREAM_CAP, STREAMS, StreamSink

__all__ = ["ExecMixin"]

_T = TypeVar("_T")
# How much longer than a command's own deadline its request may take: the worker enforces
# the deadline and reports it, and the request's is a backstop that kills the sandbox.
_GRACE_S = 5.0


class ExecMixin:
    """``exec`` and ``tool_call`` of NativeProvider."""

    _request: Callable[..., object]
    _call: Callable[..., object]
    _parse: Callable[..., Any]
    _check_live: Callable[[SandboxHandle], None]
    _env: Callable[[SandboxHandle], dict[str, str]]
    egress_bytes: Callable[[SandboxHandle], tuple[int, int]]

    def exec(self, handle: SandboxHandle, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float | None = None, max_output_bytes: int | None = None,
             env: Mapping[str, str] | None = None, cwd: str | None = None,
             on_output: OutputCallbacks | None = None) -> ExecResult:
        """The result describes this command alone: the cgroup's counters are read before and
        after it, and its peak memory is measured from its start where the kernel allows."""
        st = state_of(handle)
        limit = timeout if timeout is not None else handle.spec.limits.wall_time_s
        cap = output_cap(handle.spec.limits, st.chan.max_recv, max_output_bytes)
        args: dict[str, object] = {
            "argv": [os.fsdecode(a) for a in argv], "stdin": stdin, "timeout": limit,
            "env": {**self._env(handle), **(env or {})}, "max_output": cap, "cwd": cwd}
        sink = None
        if on_output is not None:
            stream_cap = DEFAULT_STREAM_CAP if max_output_bytes is None else max_output_bytes
            sink = StreamSink(dict(on_output), dict.fromkeys(STREAMS, stream_cap))
            args.update(stream=True, stream_cap=stream_cap)
        t0 = time.monotonic()
        with st.lock:
            self._check_live(handle)
            before, sent = st.cgroup.stats(), self.egress_bytes(handle)
            window = st.cgroup.peak_window()
            try:
                reply = self._request(handle, ops.EXEC, args, timeout=limit + _GRACE_S,
                                      on_stream=None if sink is None else sink.take)
            except MemoryLimitExceeded:
                reply = None
            finally:
                peak = window.finish() if window is not None else None
            after = st.cgroup.stats()
            st.oom_seen = after.oom_kills
        d = after.since(before)
        result = network.egressed(handle, sent, self._parse(handle, exec_result, reply, cap, During(
            oom_killed=d.oom_kills > 0, memory_limit_hit=d.memory_limit_hit,
            pids_limit_hit=d.pids_limit_hit, peak_window=peak,
            peak_before=before.peak_memory_bytes, peak_after=after.peak_memory_bytes),
            time.monotonic() - t0))
        if sink is not None:
            sink.raise_pending()
        return result

    def tool_call(self, handle: SandboxHandle, op: str, args: dict,
                  parse: Callable[[object], _T], *, timeout: float | None = None) -> _T:
        return self._parse(handle, parse, self._call(handle, op, args, timeout=timeout))
