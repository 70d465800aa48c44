"""Request bodies: read with a bound (413 past it), parsed as a JSON object, and turned into
the arguments of warden's own calls, which check every value again. Replies: ExecResult,
Execution, Entry and a live sandbox as JSON."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from starlette.requests import Request

from warden.errors import InvalidArgument
from warden.sandboxes.notebook import Execution
from warden.service.problems import ApiError
from warden.service.registry import Live
from warden.spec.limits import Limits
from warden.spec.result import ExecResult
from warden.wire.entries import Entry

__all__ = ["create_args", "entry_json", "exec_args", "exec_json", "execution_json",
           "live_json", "read_json"]

_CREATE_KEYS = {"limits", "labels", "network", "readonly", "env", "ttl_s", "idle_timeout_s",
                "reuse_key"}
_EXEC_KEYS = {"argv", "stdin", "stdin_base64", "env", "cwd", "timeout", "max_output_bytes"}
_CODE_KEYS = {"code", "context", "timeout"}


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "PayloadTooLarge", f"the request body is over the server's cap of "
                    f"{limit} bytes for JSON bodies", limit=limit)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, read up to ``limit`` bytes; an empty body is {}."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise _too_large(limit)
    if not data:
        return {}
    try:
        value = json.loads(bytes(data))
    except (ValueError, RecursionError):
        raise ApiError(400, "InvalidJSON", "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "InvalidJSON", "the request body must be a JSON object")
    return value


def _only(body: dict[str, Any], keys: set[str], what: str) -> None:
    extra = sorted(set(body) - keys)
    if extra:
        raise InvalidArgument(extra[0], body[extra[0]], f"a field of {what}: "
                              + ", ".join(sorted(keys)))


def create_args(body: dict[str, Any], tenant: str) -> dict[str, Any]:
    """Keyword arguments of warden.Sandbox for a create request of ``tenant``."""
    _only(body, _CREATE_KEYS, "a sandbox")
    for name in ("ttl_s", "idle_timeout_s", "reuse_key"):
        if body.get(name) is not None:
            raise InvalidArgument(name, body[name], "not supported by this server yet; "
                                  "leave it out")
    raw_limits = body.get("limits") or {}
    if not isinstance(raw_limits, dict):
        raise InvalidArgument("limits", raw_limits, "an object of Limits fields")
    names = {f.name for f in dataclasses.fields(Limits)}
    for name in raw_limits:
        if name not in names:
            raise InvalidArgument(f"limits.{name}", raw_limits[name], "one of "
                                  + ", ".join(sorted(names)))
    labels = body.get("labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument("labels", labels, "an object of label names to strings")
    if labels.get("tenant", tenant) != tenant:
        raise InvalidArgument("labels.tenant", labels["tenant"], "the key's own tenant")
    network = body.get("network", "none")
    if network != "none":
        raise InvalidArgument("network", network, '"none" (network policies over HTTP are '
                              "not supported by this server yet)")
    return {"limits": Limits(**raw_limits), "labels": {**labels, "tenant": tenant},
            "network": "none", "readonly": body.get("readonly", False),
            "env": body.get("env")}


def exec_args(body: dict[str, Any]) -> dict[str, Any]:
    _only(body, _EXEC_KEYS, "an exec")
    if "argv" not in body:
        raise InvalidArgument("argv", None, "a list of strings, e.g. [\"sh\", \"-c\", \"ls\"]")
    stdin = body.get("stdin")
    if body.get("stdin_base64") is not None:
        if stdin is not None:
            raise InvalidArgument("stdin_base64", "...", "either stdin or stdin_base64")
        try:
            stdin = base64.b64decode(body["stdin_base64"], validate=True)
        except (ValueError, TypeError):
            raise InvalidArgument("stdin_base64", "...", "base64 text") from None
    return {"argv": body["argv"], "stdin": stdin, "env": body.get("env"),
            "cwd": body.get("cwd"), "timeout": body.get("timeout"),
            "max_output_bytes": body.get("max_output_bytes")}


def code_args(body: dict[str, Any]) -> dict[str, Any]:
    _only(body, _CODE_KEYS, "a code cell")
    return {"code": body.get("code"), "context": body.get("context", "default"),
            "timeout": body.get("timeout")}


def _text(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def exec_json(result: ExecResult) -> dict[str, Any]:
    out = dataclasses.asdict(result)
    for stream in ("stdout", "stderr"):
        out[stream], out[f"{stream}_encoding"] = _text(getattr(result, stream))
    out["limits_hit"] = sorted(result.limits_hit)
    out["ok"] = result.ok
    return out


def execution_json(execution: Execution) -> dict[str, Any]:
    return dataclasses.asdict(execution)


def entry_json(entry: Entry) -> dict[str, Any]:
    return dataclasses.asdict(entry)


def live_json(live: Live) -> dict[str, Any]:
    return {"id": live.id, "labels": live.labels, "created": live.created,
            "limits": dataclasses.asdict(live.limits), "readonly": live.readonly,
            "network": "none", "state": "running"}
