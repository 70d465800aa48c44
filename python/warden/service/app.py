"""The Starlette application of warden serve: every route goes through ``endpoint``, which
checks the key (401), its scope (403) and the tenant's request rate (429), runs the handler,
answers errors as JSON (warden.service.problems) and records the request's metrics. Sandbox
work runs in threads bounded by a capacity limiter, never on the event loop."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from warden.errors import WardenError
from warden.service.config import Config
from warden.service.keys import KeyInfo, KeyStore
from warden.service.metrics import ServiceMetrics
from warden.service.problems import ApiError, QuotaExceeded, describe
from warden.service.registry import Live, Registry

__all__ = ["Ctx", "build_app", "endpoint", "run_sync"]

log = logging.getLogger("warden")

Handler = Callable[[Request, "Ctx"], Awaitable[Response]]


@dataclass
class Ctx:
    """What a handler gets besides the request: the caller's key and the server's parts."""

    key: KeyInfo
    registry: Registry
    config: Config
    metrics: ServiceMetrics
    limiter: anyio.CapacityLimiter
    streams: anyio.CapacityLimiter
    found: list[Live] = field(default_factory=list)

    @property
    def tenant(self) -> str:
        return self.key.tenant

    def sandbox(self, request: Request) -> Live:
        """The caller's sandbox named by the route's ``{id}`` (404 when it is not theirs)."""
        live = self.registry.get(self.tenant, request.path_params["id"])
        self.found.append(live)
        return live


async def run_sync(limiter: anyio.CapacityLimiter, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a worker thread, at most the limiter's count at once."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=limiter)


def _allowed(scope: str, method: str, kind: str) -> bool:
    if scope == "admin":
        return True
    if kind != "sandboxes":
        return False
    return scope == "sandboxes" or method in ("GET", "HEAD")


async def _authenticate(request: Request, kind: str) -> KeyInfo:
    state = request.app.state
    header = request.headers.get("authorization", "")
    scheme, _, text = header.partition(" ")
    if scheme.lower() != "bearer" or not text.strip():
        raise ApiError(401, "Unauthorized", "no API key; send `Authorization: Bearer KEY` "
                       "(make one with `warden keys create`)")
    # Checking a key the server has not seen costs a scrypt: on threads of their own, so that
    # a flood of made-up keys slows key checks, not the sandboxes' work.
    key = await run_sync(state.auth, state.store.verify, text.strip())
    if key is None:
        raise ApiError(401, "Unauthorized", "the API key is not valid: unknown, wrong, "
                       "revoked or expired")
    if not _allowed(key.scope, request.method, kind):
        raise ApiError(403, "Forbidden", f"a key of scope {key.scope!r} may not use this "
                       "route", scope=key.scope)
    return key


def _answer(exc: BaseException, request: Request, route: str,
            found: list[Live] | None = None) -> Response:
    status, body = describe(exc)
    for live in found or ():
        # A warden error names the provider's id of the sandbox; the client knows it by its
        # service id, and the provider's (a pid and a count) is the host's business.
        body["error"]["message"] = body["error"]["message"].replace(live.sandbox.id, live.id)
    if status == 500:
        log.error("%s %s failed", request.method, route, exc_info=exc)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    retry = body["error"].get("retry_after")
    if status == 429 and isinstance(retry, (int, float)):
        headers["Retry-After"] = str(max(1, int(retry + 0.999)))
    return JSONResponse(body, status_code=status, headers=headers)


def endpoint(route: str, kind: str = "sandboxes") -> Callable[[Handler], Any]:
    """A route handler behind the key, scope and rate checks; ``route`` is its template (the
    metrics' label), ``kind`` "sandboxes" or "admin"."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            state = request.app.state
            started = time.perf_counter()
            tenant = ""
            ctx: Ctx | None = None
            try:
                key = await _authenticate(request, kind)
                tenant = key.tenant
                state.registry.admit(tenant)
                ctx = Ctx(key, state.registry, state.config, state.metrics, state.limiter,
                          state.streams)
                response = await handler(request, ctx)
            except Exception as exc:  # every error becomes an answer; 500s are logged
                if isinstance(exc, QuotaExceeded):
                    state.metrics.quota_refusals.labels(tenant, exc.fields["quota"]).inc()
                response = _answer(exc, request, route, ctx.found if ctx else None)
                if response.status_code in (401, 403):
                    state.metrics.auth_refusals.labels(str(response.status_code)).inc()
            state.metrics.requests.labels(route, request.method,
                                          str(response.status_code)).inc()
            state.metrics.latency.labels(route).observe(time.perf_counter() - started)
            return response

        return run

    return wrap


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


@endpoint("/metrics", kind="admin")
async def metrics(request: Request, ctx: Ctx) -> Response:
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(status, "HTTPError")
    return JSONResponse({"error": {"type": kind, "message": f"{request.method} of this path "
                                   "is not a route of this API; see /v1/openapi.json"}},
                        status_code=status)


def _reconcile() -> None:
    """Sweep what warden processes that died (a server killed, say) left on the host: their
    sandboxes died with them (PR_SET_PDEATHSIG), their cgroups and state areas may not have."""
    from warden.providers.registry import get_provider

    try:
        report = get_provider("native").reconcile()
    except WardenError as exc:
        log.warning("reconciling at start failed: %s", exc)
        return
    if report.removed:
        log.info("at start, removed %d leftovers of dead warden processes",
                 len(report.removed))


def build_app(store: KeyStore, config: Config) -> Starlette:
    """The application; its sandboxes are closed when it shuts down."""
    from warden.service import files, openapi, routes

    sandbox_metrics = ServiceMetrics()
    registry = Registry(config, on_change=sandbox_metrics.set_live)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_reconcile)
        yield
        count = await anyio.to_thread.run_sync(registry.close_all)
        log.info("shut down: closed %d sandboxes", count)

    table = [Route("/healthz", healthz, methods=["GET"]),
             Route("/metrics", metrics, methods=["GET"]),
             Route("/v1/openapi.json", openapi.document, methods=["GET"]),
             *routes.ROUTES, *files.ROUTES]
    app = Starlette(routes=table, lifespan=lifespan,
                    exception_handlers={HTTPException: _not_found})
    app.state.store = store
    app.state.config = config
    app.state.registry = registry
    app.state.metrics = sandbox_metrics
    app.state.limiter = anyio.CapacityLimiter(config.workers)
    app.state.streams = anyio.CapacityLimiter(config.workers)
    app.state.auth = anyio.CapacityLimiter(2)
    return app
