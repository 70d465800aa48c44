"""The OpenAPI document of the API (/v1/openapi.json), written out by hand: short, and each
route says which key scope it needs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["DOCUMENT", "document"]

_ERROR = {"description": "an error: {error: {type, message, ...fields}}",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_COMMON = {str(code): _ERROR for code in (400, 401, 403, 404, 409, 413, 429, 503)}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_PATH = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}


def _op(summary: str, ok: str = "200", params: list[dict[str, Any]] | None = None,
        body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params or [],
                          "responses": {ok: {"description": "done"}, **_COMMON}}
    if body:
        op["requestBody"] = {"content": {body: {"schema": {"type": "object"} if
                                                body == "application/json" else
                                                {"type": "string", "format": "binary"}}}}
    return op


_JSON = "application/json"
DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "warden serve", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Error": {"type": "object", "properties": {"error": {
            "type": "object", "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/sandboxes": {
            "post": _op("make a sandbox {limits, labels, network, readonly, env}", "201",
                        body=_JSON),
            "get": _op("the tenant's sandboxes; ?label=key=value filters",
                       params=[{"name": "label", "in": "query", "schema": {"type": "string"}}]),
        },
        "/v1/sandboxes/{id}": {"get": _op("one sandbox", params=[_ID]),
                               "delete": _op("close a sandbox", "204", params=[_ID])},
        "/v1/sandboxes/{id}/exec": {"post": _op(
            "run {argv, stdin | stdin_base64, env, cwd, timeout, max_output_bytes}; the "
            "ExecResult, stdout/stderr as UTF-8 text or base64 (*_encoding)", params=[_ID],
            body=_JSON)},
        "/v1/sandboxes/{id}/code": {"post": _op("a notebook cell {code, context, timeout}",
                                                params=[_ID], body=_JSON)},
        "/v1/sandboxes/{id}/files": {"get": _op("entries ?path=&recursive=", params=[
            _ID, {"name": "path", "in": "query", "schema": {"type": "string"}},
            {"name": "recursive", "in": "query", "schema": {"type": "boolean"}}])},
        "/v1/sandboxes/{id}/files/{path}": {
            "put": _op("write a file from the streamed body", "201", params=[_ID, _PATH],
                       body="application/octet-stream"),
            "get": _op("the file, streamed", params=[_ID, _PATH]),
            "delete": _op("remove a file", "204", params=[_ID, _PATH]),
        },
        "/healthz": {"get": {"summary": "liveness", "security": [],
                             "responses": {"200": {"description": "ok"}}}},
        "/metrics": {"get": _op("Prometheus metrics (admin keys)")},
    },
}


async def document(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
