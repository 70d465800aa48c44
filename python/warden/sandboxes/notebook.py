"""Notebook-style code of ``Sandbox.run_code``: named contexts, each a runner process of the
sandbox (warden.guest.coderunner) whose namespace persists from cell to cell.

A context is a background process (``spawn``) fed cells on its stdin and answering each with
one line on its stdout, marked with a nonce of its own so that what the cell prints, even
straight to its descriptors, is never taken for the answer. The answer is hostile input:
bounded in size, parsed as JSON and checked field by field. A cell past its timeout is
interrupted (SIGINT: KeyboardInterrupt inside it) and the context kept; a cell that does not
yield to the interrupt within INTERRUPT_GRACE_S has its context killed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from warden.errors import CallFailed, InvalidArgument, ProcessNotFound, ProtocolError
from warden.sandboxes.process import Process

if TYPE_CHECKING:
    from warden.sandboxes.sandbox import Sandbox

__all__ = ["Execution", "ExecutionError", "Notebook"]

INTERRUPT_GRACE_S = 3.0
_MAX_ANSWER = 8 << 20
_RUNNER = (Path(__file__).resolve().parent.parent / "guest" / "coderunner.py").read_text()


@dataclass(frozen=True)
class ExecutionError:
    """An exception a cell raised: its type's name, its text and its traceback."""

    name: str
    value: str
    traceback: str


@dataclass
class Execution:
    """What one cell did: what it printed, the text of its last expression's value (None when
    it had none), MIME bundles of rich values, and the error it raised or None."""

    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    display: list[dict[str, str]] = field(default_factory=list)
    error: ExecutionError | None = None


def _parse(line: bytes) -> Execution:
    what = "the code runner's answer"
    try:
        got = json.loads(line)
    except ValueError:
        raise ProtocolError(f"{what} is not JSON; the runner is broken or hostile") from None
    if not isinstance(got, dict):
        raise ProtocolError(f"{what} is not a map; the runner is broken or hostile")
    texts = {k: got.get(k) for k in ("stdout", "stderr")}
    result, display, error = got.get("result"), got.get("display"), got.get("error")
    if not all(isinstance(v, str) for v in texts.values()) \
            or not (result is None or isinstance(result, str)) \
            or not isinstance(display, list) or not all(
                isinstance(b, dict) and all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in b.items()) for b in display):
        raise ProtocolError(f"{what} has fields of the wrong types; the runner is broken or "
                            "hostile")
    err = None
    if error is not None:
        if not isinstance(error, dict) or not all(
                isinstance(error.get(k), str) for k in ("name", "value", "traceback")):
            raise ProtocolError(f"{what} has a malformed error; the runner is broken or hostile")
        err = ExecutionError(error["name"], error["value"], error["traceback"])
    return Execution(texts["stdout"], texts["stderr"], result, display, err)  # type: ignore[arg-type]


class _Context:
    def __init__(self, proc: Process, nonce: bytes) -> None:
        self.proc, self.nonce = proc, nonce
        self.lock = threading.Lock()
        self.buf = b""

    def answer(self, deadline: float, stray: Execution) -> Execution | None:
        """The next answer (None at ``deadline``); what came before it on stdout or stderr
        (the cell writing to its descriptors directly) is added to ``stray``."""
        while True:
            at = self.buf.find(self.nonce)
            end = self.buf.find(b"\n", at) if at >= 0 else -1
            if end >= 0:
                stray.stdout += self.buf[:at].decode(errors="replace")
                line, self.buf = self.buf[at + len(self.nonce):end], self.buf[end + 1:]
                return _parse(line)
            if len(self.buf) > _MAX_ANSWER:
                raise ProtocolError("the code runner sent more than 8 MiB without an answer")
            rounds = self.proc._chunks(deadline)
            chunks = next(rounds, None)
            if chunks is None:
                raise EOFError("the context's runner ended")
            if not chunks:
                return None
            for stream, data in chunks:
                if stream == "stdout":
                    self.buf += data
                else:
                    stray.stderr += data.decode(errors="replace")


class Notebook:
    """The code contexts of one Sandbox handle."""

    def __init__(self, box: Sandbox) -> None:
        self._box = box
        self._contexts: dict[str, _Context] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._contexts)

    def reset(self, name: str) -> None:
        with self._lock:
            ctx = self._contexts.pop(name, None)
        if ctx is not None:
            _end(ctx)

    def _context(self, name: str) -> _Context:
        with self._lock:
            ctx = self._contexts.get(name)
            if ctx is None:
                nonce = os.urandom(16).hex()
                proc = self._box.spawn(["python3", "-I", "-u", "-c", _RUNNER, nonce],
                                       env={"PYTHONUNBUFFERED": "1"})
                ctx = self._contexts[name] = _Context(proc, nonce.encode())
            return ctx

    def run(self, code: str, name: str, timeout: float) -> Execution:
        if not isinstance(name, str) or not name:
            raise InvalidArgument("context", name, "a non-empty string naming the context")
        ctx = self._context(name)
        stray = Execution()
        with ctx.lock:
            try:
                ctx.proc.write(json.dumps({"code": code}) + "\n")
                got = ctx.answer(time.monotonic() + timeout, stray)
                if got is None:
                    ctx.proc.kill(signal.SIGINT)
                    got = ctx.answer(time.monotonic() + INTERRUPT_GRACE_S, stray)
                    if got is None:
                        self.reset(name)
                        return _lost(stray, f"the cell ran past its {timeout:g}s timeout and "
                                            "did not yield to the interrupt; the context was "
                                            "killed and starts afresh next time")
                    got.error = ExecutionError("TimeoutError", f"the cell ran past its "
                                               f"{timeout:g}s timeout and was interrupted; the "
                                               "context is kept", got.error.traceback
                                               if got.error else "")
            except EOFError:
                with self._lock:
                    self._contexts.pop(name, None)
                return _lost(stray, "the context's Python ended (the cell exited or was "
                                    "killed); it starts afresh next time")
            except ProtocolError:
                self.reset(name)  # out of step with its runner: it starts afresh
                raise
        got.stdout, got.stderr = stray.stdout + got.stdout, stray.stderr + got.stderr
        return got


def _lost(stray: Execution, why: str) -> Execution:
    stray.error = ExecutionError("ContextLost", why, "")
    return stray


def _end(ctx: _Context) -> None:
    try:
        ctx.proc.kill()
    except (ProcessNotFound, CallFailed):
        pass  # already gone, by itself or with its sandbox
