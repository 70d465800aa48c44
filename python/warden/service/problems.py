"""Errors as the HTTP API answers them: ``{"error": {"type", "message", ...fields}}`` with a
status code a client can act on. The type is the warden error's class name; the fields are its
own (argument, allowed, errno, path, limit, size, retry_after, quota), never text that a client
would have to match. Pure: no HTTP library here."""

from __future__ import annotations

from typing import Any

from warden import errors as e

__all__ = ["ApiError", "NotFound", "QuotaExceeded", "describe"]


class ApiError(Exception):
    """An answer of the API that is not a warden error: auth, scope, a missing sandbox, a
    body too large, a quota."""

    def __init__(self, status: int, type: str, message: str, **fields: Any) -> None:
        self.status = status
        self.type = type
        self.message = message
        self.fields = fields
        super().__init__(message)


class NotFound(ApiError):
    def __init__(self, what: str = "sandbox") -> None:
        # The same words for a missing sandbox and another tenant's: nothing tells them apart.
        super().__init__(404, "SandboxNotFound" if what == "sandbox" else "NotFound",
                         f"no such {what}; list them with GET /v1/sandboxes")


class QuotaExceeded(ApiError):
    def __init__(self, quota: str, limit: float, asked: float, used: float | None = None,
                 retry_after: float | None = None) -> None:
        extra = {} if used is None else {"used": used}
        if retry_after is not None:
            extra["retry_after"] = round(retry_after, 3)
        super().__init__(429, "QuotaExceeded", f"over the tenant's quota {quota!r} "
                         f"(limit {limit}, asked {asked}); ask the operator to raise it",
                         quota=quota, limit=limit, asked=asked, **extra)


# The most specific class first: the first match decides the status.
_STATUS: list[tuple[type[BaseException], int]] = [
    (e.SandboxFileNotFound, 404),
    (e.ProcessNotFound, 404),
    (e.SandboxFileError, 409),
    (e.PathEscapeError, 400),
    (e.InvalidArgument, 400),
    (e.PayloadTooLarge, 413),
    (e.DiskQuotaExceeded, 413),
    (e.RateLimitExceeded, 429),
    (e.ProviderUnavailable, 503),
    (e.HostResourceExhausted, 503),
    (e.SandboxSetupError, 503),
    (e.CallFailed, 409),
    (e.WardenError, 409),
]

_FIELDS = ("argument", "allowed", "errno", "step", "missing", "resource", "limit", "size",
           "direction", "retry_after", "pid", "signal", "exit_code")


def describe(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(status, body) for ``exc``; anything that is not a warden or API error is 500 with no
    detail (the server's log has it)."""
    if isinstance(exc, ApiError):
        return exc.status, {"error": {"type": exc.type, "message": exc.message, **exc.fields}}
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    if status == 500:
        return 500, {"error": {"type": "InternalError",
                               "message": "the server failed; its log says why"}}
    body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    for name in _FIELDS:
        value = getattr(exc, name, None)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            body[name] = value
    if isinstance(exc, e.SandboxFileError) and isinstance(exc.filename, str):
        body["path"] = exc.filename
    elif isinstance(exc, e.PathEscapeError) and isinstance(exc.path, str):
        body["path"] = exc.path
    return status, {"error": body}
