"""The loop that runs inside a sandbox: read a request frame, run the plugin, send the reply.

Ops (warden.wire.ops): ``call`` (action, payload), ``batch`` (action, items),
``exec_python`` (code), ``entry`` (did the plugin's entry load?), ``ping`` and ``shutdown``,
plus the ``extra_ops`` it is given. An exception becomes an error reply of fields
(warden.wire.replies): the plugin's own with origin "plugin", the worker's refusals (an
oversized request or reply, a bad request, a path or file operation refused) with origin
"warden"; in every case the worker keeps serving. It stops on ``shutdown`` or when the host
closes the channel. Nothing here knows about sandboxing: the zygote forks into the sandbox
first and then calls ``serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import importlib.util
import inspect
import io
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from warden.errors import PayloadTooLarge, PluginError, ProtocolError, WardenError
from warden.guest import emit
from warden.wire import ops as op_names
from warden.wire.channel import Channel, ChannelClosed
from warden.wire.codec import DEFAULT_MAX_FRAME, new_packer, pack
from warden.wire.large import (
    DEFAULT_MAX_LARGE,
    feed_pipe,
    is_large_ref,
    resolve_large,
    write_pipe,
)
from warden.wire.replies import error_reply, ok_reply

__all__ = ["ENTRY_MODULE", "Handler", "load_entry", "log_to_stderr", "main", "serve"]

ENTRY_MODULE = "warden_plugin_entry"

# A bytes result above this goes back through a pipe (warden.wire.large) where the channel
# carries descriptors: packed into a frame, it would be a second copy inside the sandbox.
LARGE_REPLY = 1 << 20

# Named, not __name__: run as `python -m warden.guest.worker` this module is __main__.
log = logging.getLogger("warden.guest.worker")


def log_to_stderr() -> None:
    """Sends the worker's own messages (a host that broke the protocol) to stderr. Called by each
    program that starts a worker (``main`` here, the zygote, the container program), never
    by ``serve``, which also runs inside applications that configure logging themselves."""
    root = logging.getLogger("warden")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warden worker: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


@dataclass(frozen=True)
class Handler:
    """A plugin's entry points: ``handle(action, payload)`` and optionally
    ``handle_batch(action, items)``; either may be ``async def``."""

    handle: Callable[[str, Any], Any]
    handle_batch: Callable[[str, list], Any] | None = None

    @classmethod
    def from_object(cls, obj: object) -> Handler:
        """A Handler from a Handler, or from any object (a module) with ``handle``."""
        if isinstance(obj, Handler):
            return obj
        handle = getattr(obj, "handle", None)
        if not callable(handle):
            where = getattr(obj, "__file__", None)
            what = f"entry point {where}" if isinstance(where, str) else repr(obj)
            raise PluginError("EntryPointError",
                              f"{what} defines no callable handle(action, payload); define "
                              "one there (handle_batch(action, items) is optional)")
        handle_batch = getattr(obj, "handle_batch", None)
        return cls(handle, handle_batch if callable(handle_batch) else None)


def load_entry(path: str | os.PathLike) -> Handler:
    """Import a plugin's entry file (e.g. ``src/main.py``) as a module and return its
    handlers. The entry's directory goes first on sys.path so its sibling modules import."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise PluginError("EntryPointError", f"entry point {path} does not exist or is not a "
                          "file; check entry_point in plugin.yaml")
    spec = importlib.util.spec_from_file_location(ENTRY_MODULE, path)
    if spec is None or spec.loader is None:
        raise PluginError("EntryPointError", f"entry point {path} cannot be imported as Python; "
                          "it must be a .py file")
    module = importlib.util.module_from_spec(spec)
    entry_dir = os.path.dirname(path)
    if entry_dir not in sys.path:
        sys.path.insert(0, entry_dir)
    sys.modules[ENTRY_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[ENTRY_MODULE]
        raise PluginError(type(exc).__name__, f"importing entry point {path} failed: {exc}",
                          traceback.format_exc()) from exc
    return Handler.from_object(module)


class _CappedText(io.TextIOBase):
    """A text sink that keeps the first ``cap`` characters, so that code printing without end
    cannot push the reply over the frame cap."""

    def __init__(self, cap: int) -> None:
        self._parts: list[str] = []
        self._left = cap
        self.truncated = False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if len(s) > self._left:
            self.truncated = True
        if self._left > 0:
            piece = s[: self._left]
            self._parts.append(piece)
            self._left -= len(piece)
        return len(s)

    def getvalue(self) -> bytes:
        return "".join(self._parts).encode("utf-8", "backslashreplace")


class _Worker:
    def __init__(self, channel: Channel, handler_factory: Callable[[], object],
                 data_dir: str | None, extra_ops: dict | None = None,
                 large_replies: bool = False) -> None:
        self.extra_ops = dict(extra_ops or {})
        self.large_replies = large_replies
        # The memfd of this request's payload and its mapping, until the reply is sent.
        self._kept_fd: int | None = None
        self._mapped: object = None
        self.channel = channel
        self.data_dir = data_dir
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handler: Handler | None = None
        self.load_error: BaseException | None = None
        try:
            self.handler = Handler.from_object(handler_factory())
        except Exception as exc:
            # Every call then answers with the load error, so the host sees the plugin's
            # import traceback instead of a worker that died without a word.
            self.load_error = exc

    def run_awaitable(self, value: Any) -> Any:
        if self.loop is None:
            # One loop for the worker's life: plugins may keep clients or tasks bound to it.
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
        return self.loop.run_until_complete(value)

    def _handler(self) -> Handler:
        if self.handler is None:
            raise self.load_error or PluginError("EntryPointError", "the plugin has no handler")
        return self.handler

    def op_call(self, msg: dict, fds: list[int], used: set[int]) -> Any:
        action = msg.get("action")
        if not isinstance(action, str):
            raise ProtocolError(f"call needs a string 'action', got {type(action).__name__}")
        payload = resolve_large(msg.get("payload"), fds=fds, data_dir=self.data_dir, used=used,
                                limit=self.channel.max_large)
        return self._handler().handle(action, payload)  # awaited by _loop when async

    def op_batch(self, msg: dict, fds: list[int], used: set[int]) -> Any:
        action = msg.get("action")
        if not isinstance(action, str):
            raise ProtocolError(f"batch needs a string 'action', got {type(action).__name__}")
        items = resolve_large(msg.get("items"), fds=fds, data_dir=self.data_dir, used=used,
                              limit=self.channel.max_large)
        if not isinstance(items, list):
            raise ProtocolError(f"batch needs a list of 'items', got {type(items).__name__}")
        handler = self._handler()
        if handler.handle_batch is not None:
            result = handler.handle_batch(action, items)
            if inspect.isawaitable(result):
                result = self.run_awaitable(result)
            return result
        handle = handler.handle
        results = [handle(action, item) for item in items]
        # A sync handle returns plain values; checking the first result keeps the per-item
        # cost of the common case at one call.
        if results and inspect.isawaitable(results[0]):
            results = [self.run_awaitable(r) if inspect.isawaitable(r) else r for r in results]
        return results

    def op_exec_python(self, msg: dict, fds: list[int], used: set[int]) -> Any:
        code = msg.get("code")
        if not isinstance(code, str):
            raise ProtocolError(f"exec_python needs a string 'code', got {type(code).__name__}")
        cap = max(1024, self.channel.max_send // 4)
        out, err = _CappedText(cap), _CappedText(cap)
        exit_code = 0
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            compiled = compile(code, "<warden>", "exec")
            # Running the caller's code is this op's purpose; the sandbox is the boundary.
            exec(compiled, {"__name__": "__main__", "__builtins__": builtins})  # nosec B102
        except SystemExit as exc:
            code_ = exc.code
            if code_ is None:
                exit_code = 0
            elif isinstance(code_, int):
                exit_code = code_
            else:
                err.write(f"{code_}\n")
                exit_code = 1
        except Exception:
            err.write(traceback.format_exc())
            exit_code = 1
        finally:
            sys.stdout, sys.stderr = old
        return {"exit_code": exit_code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                "stdout_truncated": out.truncated, "stderr_truncated": err.truncated}

    def op_entry(self, msg: dict, fds: list[int], used: set[int]) -> Any:
        """Whether the plugin's entry loaded: what it defines, or its load error raised."""
        handler = self._handler()
        return {"handle": True, "handle_batch": handler.handle_batch is not None}

    def op_ping(self, msg: dict, fds: list[int], used: set[int]) -> Any:
        return {"pong": True, "pid": os.getpid()}

    def take_payload(self, msg: dict, fds: list[int], used: set[int]) -> None:
        """Map a large ``payload`` before the op runs. Over the frame cap the handler gets the
        mapping, and its memfd stays open until the reply is sent: a handler that answers with
        the payload itself answers with the same memfd, and nothing is copied inside the
        sandbox. Smaller, it gets bytes (one copy), as an inline payload would arrive."""
        ref = msg.get("payload")
        if not is_large_ref(ref):
            return
        msg["payload"] = value = resolve_large(
            ref, fds=fds, data_dir=self.data_dir, used=used, limit=self.channel.max_large,
            keep_fds=True)
        if isinstance(ref, dict) and set(ref) == {"$fd"}:
            self._kept_fd = fds[ref["$fd"]]
            if isinstance(value, memoryview) and value.nbytes <= self.channel.max_recv:
                # Bytes that would have fit a frame arrive as bytes, as they would inline.
                msg["payload"] = value.tobytes()
            else:
                self._mapped = value if isinstance(value, memoryview) else None

    def send_large(self, request_id: int, result: object, over_cap: bool = False) -> bool:
        """Send an ok reply whose result travels beside the frame; False when it is not
        large enough (or this channel carries no descriptors) and goes inline. ``over_cap``:
        the result was found too large for a frame (any value then goes)."""
        if not self.large_replies:
            return False
        if result is not None and result is self._mapped and self._kept_fd is not None:
            self.channel.send(ok_reply(request_id, {"$fd": 0}), fds=[self._kept_fd])
            return True
        if isinstance(result, (bytes, bytearray, memoryview)):
            if memoryview(result).nbytes <= LARGE_REPLY and not over_cap:
                return False
            ref: dict[str, Any] = {"$pipe": 0, "size": memoryview(result).nbytes}
        elif not over_cap:
            return False
        else:
            # A value over the frame cap (the caller found it so): packed once, then piped.
            result = pack(new_packer(), result)
            ref = {"$pipe": 0, "size": len(result), "$codec": "msgpack"}
        size = memoryview(result).nbytes
        if size > self.channel.max_large:
            raise PayloadTooLarge(size, self.channel.max_large, what="reply payload",
                                  direction="outgoing")
        r, w = write_pipe(result)
        try:
            self.channel.send(ok_reply(request_id, ref), fds=[r])
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        feed_pipe(w, result)
        return True

    def reply(self, reply: dict) -> None:
        try:
            self._send_reply(reply)
        except PayloadTooLarge as exc:
            # The result is over what the host takes: say so instead, and keep serving.
            self.channel.send(error_reply(reply["id"], exc, origin="warden"))
        except ProtocolError as exc:
            # The result is not msgpack-encodable: a plugin bug, reported as such.
            self.channel.send(error_reply(reply["id"], TypeError(
                f"the result cannot be sent back: {exc}"), origin="plugin"))
        finally:
            self._mapped = None
            if self._kept_fd is not None:
                os.close(self._kept_fd)
                self._kept_fd = None

    def _send_reply(self, reply: dict) -> None:
        if reply.get("ok") is not True or not self.large_replies:
            self.channel.send(reply)
            return
        if self.send_large(reply["id"], reply["result"]):
            return
        try:
            self.channel.send(reply)
            return
        except PayloadTooLarge:
            pass  # refused before a byte went out: the channel is in step
        self.send_large(reply["id"], reply["result"], over_cap=True)

    def serve(self) -> int:
        try:
            return self._loop()
        except ChannelClosed:
            return 0  # the host went away while a reply was being sent: nobody to answer

    def _loop(self) -> int:
        ops = {op_names.CALL: self.op_call, op_names.BATCH: self.op_batch,
               op_names.ENTRY: self.op_entry, op_names.EXEC_PYTHON: self.op_exec_python,
               op_names.PING: self.op_ping, **self.extra_ops}
        channel = self.channel
        while True:
            try:
                msg, fds = channel.recv_with_fds()
            except ChannelClosed:
                return 0
            except PayloadTooLarge as exc:
                request_id = getattr(exc, "request_id", None)
                if request_id is not None:
                    channel.send(error_reply(request_id, exc, origin="warden"))
                    continue
                log.error("%s; the request had no readable id", exc)
                return 2
            except ProtocolError as exc:
                log.error("%s", exc)
                return 2
            if not isinstance(msg, dict):
                log.error("request is a %s, not a map", type(msg).__name__)
                return 2
            request_id = msg.get("id")
            if not isinstance(request_id, int) or isinstance(request_id, bool):
                log.error("request without an integer id: %s", type(msg).__name__)
                return 2
            op = msg.get("op")
            if op == op_names.SHUTDOWN:
                channel.send(ok_reply(request_id, None))
                return 0
            # One request in a call of its own: nothing of it (a large result above all)
            # outlives its reply, to sit beside the next request's.
            self._answer(request_id, ops.get(op) if isinstance(op, str) else None, op, ops,
                         msg, fds)
            del msg, fds

    def _answer(self, request_id: int, fn: Callable | None, op: object, ops: dict,
                msg: dict, fds: list[int]) -> None:
        used: set[int] = set()
        try:
            if fn is None:
                raise ProtocolError(f"unknown op {op!r}; ops are {sorted(ops)} and shutdown")
            self.take_payload(msg, fds, used)
            with emit.bound(request_id, self.channel.send):
                result = fn(msg, fds, used)
            if inspect.isawaitable(result):
                # An async handle, or a tool op's async function: awaited on the
                # worker's one event loop.
                result = self.run_awaitable(result)
            reply = ok_reply(request_id, result)
        except PluginError as exc:
            reply = error_reply(request_id, exc, origin="plugin")
        except WardenError as exc:
            # The worker's own refusal: a bad request, a frame over a cap, a path out of
            # its area, a file operation that failed.
            reply = error_reply(request_id, exc, origin="warden")
        except (Exception, SystemExit) as exc:
            # SystemExit too: a plugin calling sys.exit() fails its call, not the worker.
            reply = error_reply(request_id, exc, origin="plugin")
        finally:
            for i, fd in enumerate(fds):
                if i not in used:
                    os.close(fd)
        self.reply(reply)


def serve(fd: int, handler_factory: Callable[[], object], *, max_frame: int = DEFAULT_MAX_FRAME,
          data_dir: str | None = None, extra_ops: dict | None = None,
          large_replies: bool = False, max_large: int | None = None) -> int:
    """Serve requests on the connected socket ``fd`` until shutdown or EOF; return an exit
    status (0 on a clean end, 2 when the host sent something that is not the protocol).

    ``handler_factory()`` returns a Handler or any object with ``handle`` (a module); it is
    called once, inside the sandbox, before the first request is read. ``data_dir`` enables
    ``{"$file": relpath}`` payloads. ``large_replies``: the host takes descriptors on this
    channel, so large results go back beside their frame (a pipe, or the payload's own memfd);
    ``max_large``: the most the host takes that way (its decode budget for this sandbox)."""
    channel = Channel(fd, max_send=max_frame, max_recv=max_frame,
                      max_large=max_large or DEFAULT_MAX_LARGE)
    try:
        return _Worker(channel, handler_factory, data_dir, extra_ops, large_replies).serve()
    finally:
        channel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warden.guest.worker",
                                     description="serve warden requests on an inherited socket")
    parser.add_argument("--fd", type=int, required=True, help="connected unix socket fd")
    parser.add_argument("--entry", required=True, help="the plugin's entry file")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-frame", type=int, default=DEFAULT_MAX_FRAME)
    args = parser.parse_args(argv)
    log_to_stderr()
    return serve(args.fd, lambda: load_entry(args.entry), max_frame=args.max_frame,
                 data_dir=args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
