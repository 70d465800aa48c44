"""warden.ForkServer: a sandbox that runs setup once and then gives every input a fresh
copy-on-write child of the state setup left, with limits of its own and an exact verdict.

The sandbox is made through the provider protocol (warden.providers.base and the registry);
inside it the worker loads warden.guest.forkserver as its entry. See that module and
warden.guest.forker for what happens inside.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from warden.errors import (
    CallFailed,
    InvalidArgument,
    MemoryLimitExceeded,
    PluginError,
    ProtocolError,
    TimeoutExceeded,
    WardenError,
    WorkerCrashed,
)
from warden.guest import carry
from warden.guest import forkserver as guest_forkserver
from warden.providers.base import Provider, SandboxHandle, SandboxSpec
from warden.providers.registry import get_provider
from warden.sandboxes import checks
from warden.spec.limits import Limits
from warden.testing.verdict import Verdict, bucket_of, judge
from warden.wire import ops

__all__ = ["ForkServer"]

_ENTRY_FILE = os.path.abspath(guest_forkserver.__file__)
_SETUP_AT = "/setup"
# Inputs per request: enough to spread a request's cost, few enough that one request's
# results stay well under a frame (BATCH * (RESULT_CAP + stderr tail)).
BATCH = 32
RESULT_CAP = 256 << 10
# The most one request's inputs may hold (the frame is 16 MiB: room for the request's own
# fields); a single input over it is refused before anything runs.
INPUT_CAP = 12 << 20
# What a sandbox needs beyond one input's memory: the collector, the forker, setup's state.
_SERVER_OVERHEAD_MB = 256
_SLACK_S = 5.0


def _setup_source(setup: object) -> tuple[str, str, str]:
    """(source, its file name inside, the host directory to bind) for ``setup``."""
    if isinstance(setup, os.PathLike) or (isinstance(setup, str) and "\n" not in setup
                                          and setup.endswith(".py")):
        path = os.path.abspath(os.fspath(setup))
        try:
            with open(path, encoding="utf-8") as f:
                source = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument("setup", setup, f"Python source, or the path of a readable "
                                  f".py file ({exc.__class__.__name__}: {exc})") from None
        return source, f"{_SETUP_AT}/{os.path.basename(path)}", os.path.dirname(path)
    if not isinstance(setup, str) or "\0" in setup:
        raise InvalidArgument("setup", setup, "Python source as a str, or the path of a .py "
                              "file")
    # warden.testing.isolated's source comes with the test file's directory to bind.
    bind = getattr(setup, "bind_dir", "")
    return str(setup), "<setup>", bind if isinstance(bind, str) else ""


def _limits(limits: object, per_input: object) -> tuple[Limits, Limits]:
    per = checks.limits_of(per_input)
    if limits is None:
        whole = Limits(memory_mb=per.memory_mb + _SERVER_OVERHEAD_MB,
                       wall_time_s=max(60.0, per.wall_time_s * BATCH + 60.0))
    else:
        whole = checks.limits_of(limits)
    return whole, per


class _Server:
    """One sandbox running a fork server; used by one thread at a time."""

    def __init__(self, owner: ForkServer) -> None:
        self.owner = owner
        self.handle: SandboxHandle | None = None

    def start(self) -> None:
        o = self.owner
        spec = SandboxSpec(limits=o.limits, env=dict(o.env), entry_point=_ENTRY_FILE,
                           code_dir=o.setup_dir, mount_at=_SETUP_AT if o.setup_dir else "/plugin")
        handle = o.provider.create(spec)
        try:
            msg = {"source": o.source, "filename": o.filename, "entry": o.entry,
                   "path": [_SETUP_AT] if o.setup_dir else [],
                   "wall_s": o.per_input.wall_time_s,
                   "cpu_s": None if o.per_input.cpu_time_s is None
                   else max(1, round(o.per_input.cpu_time_s)),
                   "memory_bytes": o.per_input.memory_mb << 20, "result_cap": RESULT_CAP}
            o.provider.call(handle, ops.CALL, {"action": "setup", "payload": msg},
                            timeout=o.limits.wall_time_s)
        except BaseException:
            o.provider.destroy(handle)
            raise
        self.handle = handle

    def stop(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            self.owner.provider.destroy(handle)

    def run(self, encoded: list[bytes]) -> list[Verdict]:
        """Verdicts of ``encoded`` inputs. If the sandbox itself dies, the batch is run again
        one input at a time, so that the input that killed it is the one judged for it."""
        o = self.owner
        if self.handle is None:
            self.start()
        assert self.handle is not None
        timeout = len(encoded) * (o.per_input.wall_time_s + 1.0) + _SLACK_S
        try:
            records = o.provider.call(self.handle, ops.CALL,
                                      {"action": "run", "payload": {"inputs": encoded}},
                                      timeout=timeout)
        except (CallFailed, ProtocolError) as exc:
            self.stop()
            if isinstance(exc, PluginError) and exc.type != "ProtocolError":
                raise
            if len(encoded) > 1:
                return [v for e in encoded for v in self.run([e])]
            return [_sandbox_death(exc)]
        if not isinstance(records, list) or len(records) != len(encoded):
            self.stop()
            raise ProtocolError("a fork server answered with the wrong number of records")
        return [judge(r, None if o.per_input.cpu_time_s is None
                      else max(1, round(o.per_input.cpu_time_s))) for r in records]


def _sandbox_death(exc: WardenError) -> Verdict:
    """The verdict of an input during which the whole sandbox died."""
    if isinstance(exc, MemoryLimitExceeded):
        return Verdict("memory", bucket=bucket_of("memory", "sandbox", ()))
    if isinstance(exc, TimeoutExceeded):
        return Verdict("timeout", bucket=bucket_of("timeout", "sandbox", ()))
    sig = exc.signal if isinstance(exc, WorkerCrashed) else None
    return Verdict("crash", signal=sig, bucket=bucket_of("crash", f"sandbox {sig}", ()))


class ForkServer:
    """A fork server in a sandbox: ``setup`` (Python source, or the path of a .py file whose
    directory is bound read-only at /setup and put on sys.path) runs once; then each input
    runs ``entry(input)`` in a fresh fork of the state setup left.

    ``per_input`` (a Limits) bounds each input: ``wall_time_s`` (the child is killed),
    ``cpu_time_s`` (RLIMIT_CPU) and ``memory_mb`` (what the input may allocate beyond what
    setup left: RLIMIT_AS). ``limits`` bound the whole sandbox (default: the input's memory
    plus 256 MiB). Inputs and results travel as warden.guest.carry encodes them; a value
    that cannot travel is an InvalidArgument before anything runs.
    """

    def __init__(self, setup: str | os.PathLike, *, entry: str = "target",
                 limits: Limits | None = None, per_input: Limits | None = None,
                 env: Mapping[str, str] | None = None, provider: str = "native") -> None:
        self.source, self.filename, self.setup_dir = _setup_source(setup)
        if not isinstance(entry, str) or not entry.isidentifier():
            raise InvalidArgument("entry", entry, "the name of the function setup defines")
        try:
            compile(self.source, self.filename, "exec")
        except (SyntaxError, ValueError) as exc:
            raise InvalidArgument("setup", setup, f"valid Python ({exc})") from None
        self.entry = entry
        self.limits, self.per_input = _limits(limits, per_input)
        self.env = checks.env_map(env)
        self.provider: Provider = get_provider(provider)
        self._lock = threading.Lock()
        self._idle: list[_Server] = []
        self._all: list[_Server] = []
        self._closed = False
        first = _Server(self)
        first.start()  # setup's errors surface here, once
        self._all.append(first)
        self._idle.append(first)

    # -- servers -------------------------------------------------------------------------------

    def _take(self) -> _Server:
        with self._lock:
            if self._closed:
                raise InvalidArgument("ForkServer", self, "an open ForkServer; this one is closed")
            if self._idle:
                return self._idle.pop()
            server = _Server(self)
            self._all.append(server)
            return server

    def _give(self, server: _Server) -> None:
        with self._lock:
            if self._closed:
                server.stop()
            else:
                self._idle.append(server)

    # -- inputs --------------------------------------------------------------------------------

    def run(self, input: object) -> Verdict:
        """The verdict of ``input``."""
        encoded = _encode(input, "input")
        server = self._take()
        try:
            return server.run([encoded])[0]
        finally:
            self._give(server)

    def map(self, inputs: Iterable[object], jobs: int | None = None) -> Iterator[Verdict]:
        """Verdicts of ``inputs``, in their order, spread over ``jobs`` fork servers (default:
        one per CPU). Inputs given as a collection (a list, a tuple, a set...) are all checked
        here, before any runs: one that cannot travel is an InvalidArgument from this call.
        Inputs from an iterator are checked as they are taken, each before it is sent."""
        if jobs is None:
            jobs = len(os.sched_getaffinity(0)) or 1
        if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 256:
            raise InvalidArgument("jobs", jobs, "None or a whole number from 1 to 256")
        batches = _batches(inputs)
        if isinstance(inputs, Collection):
            batches = iter(list(batches))
        return self._map(batches, jobs)

    def _map(self, batches: Iterator[list[bytes]], jobs: int) -> Iterator[Verdict]:
        if jobs == 1:
            server = self._take()
            try:
                for batch in batches:
                    yield from server.run(batch)
            finally:
                self._give(server)
            return
        yield from self._spread(batches, jobs)

    def _spread(self, batches: Iterator[list[bytes]], jobs: int) -> Iterator[Verdict]:
        """Batches to ``jobs`` threads, each with its own fork server; results in order."""
        todo: queue.Queue = queue.Queue(maxsize=jobs * 2)
        done: dict[int, Any] = {}
        cond = threading.Condition()

        def work() -> None:
            server = self._take()
            try:
                while (item := todo.get()) is not None:
                    n, batch = item
                    try:
                        out: Any = server.run(batch)
                    except BaseException as exc:  # handed to the caller, in order
                        out = exc
                    with cond:
                        done[n] = out
                        cond.notify_all()
            finally:
                self._give(server)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(jobs)]
        for t in threads:
            t.start()
        feeder = threading.Thread(target=_feed, args=(batches, todo, jobs, cond, done),
                                  daemon=True)
        feeder.start()
        try:
            n = 0
            while True:
                with cond:
                    while n not in done:
                        cond.wait()
                    out = done.pop(n)
                if out is None:
                    return
                if isinstance(out, BaseException):
                    raise out
                yield from out
                n += 1
        finally:
            feeder.join()
            for t in threads:
                t.join()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            servers, self._all, self._idle = self._all, [], []
        for server in servers:
            server.stop()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encode(value: object, name: str) -> bytes:
    data = carry.encode(value, name)
    if len(data) > INPUT_CAP:
        raise InvalidArgument(name, f"<{type(value).__name__} of {len(data)} bytes encoded>",
                              f"at most {INPUT_CAP} bytes once encoded; pass a larger input "
                              "as a file the setup reads")
    return data


def _batches(inputs: Iterable[object]) -> Iterator[list[bytes]]:
    """Requests of at most BATCH inputs and INPUT_CAP bytes."""
    batch: list[bytes] = []
    size = 0
    for i, value in enumerate(inputs):
        data = _encode(value, f"inputs[{i}]")
        if batch and (len(batch) == BATCH or size + len(data) > INPUT_CAP):
            yield batch
            batch, size = [], 0
        batch.append(data)
        size += len(data)
    if batch:
        yield batch


def _feed(batches: Iterator[list[bytes]], todo: queue.Queue, jobs: int,
          cond: threading.Condition, done: dict[int, Any]) -> None:
    """Numbered batches into ``todo``, then one stop per worker; the end (or the encoding
    error of an input) is recorded under the next number."""
    n = 0
    try:
        for batch in batches:
            todo.put((n, batch))
            n += 1
        end: Any = None
    except BaseException as exc:
        end = exc
    for _ in range(jobs):
        todo.put(None)
    with cond:
        done[n] = end
        cond.notify_all()
