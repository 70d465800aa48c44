"""The sandbox routes: create, list, get, delete, exec, code."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from warden.errors import InvalidArgument
from warden.sandboxes.sandbox import Sandbox
from warden.service import bodies
from warden.service.app import Ctx, endpoint, run_sync

__all__ = ["ROUTES"]

_ONE = "/v1/sandboxes/{id}"


@endpoint("/v1/sandboxes")
async def create(request: Request, ctx: Ctx) -> Response:
    args = bodies.create_args(await bodies.read_json(request, ctx.config.max_json_bytes),
                              ctx.tenant)
    limits = args["limits"]
    ctx.registry.reserve(ctx.tenant, limits)
    started = time.perf_counter()
    try:
        sandbox = await run_sync(ctx.limiter, lambda: Sandbox(**args))
    except BaseException:
        ctx.registry.release(ctx.tenant, limits)
        raise
    ctx.metrics.create_seconds.labels("on_call").observe(time.perf_counter() - started)
    live = ctx.registry.add(ctx.tenant, sandbox, args["labels"], args["readonly"])
    return JSONResponse(bodies.live_json(live), status_code=201)


def _label_filter(request: Request) -> dict[str, str]:
    wanted = {}
    for item in request.query_params.getlist("label"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument("label", item, "key=value, e.g. label=project=demo")
        wanted[key] = value
    return wanted


@endpoint("/v1/sandboxes")
async def listing(request: Request, ctx: Ctx) -> Response:
    found = ctx.registry.list(ctx.tenant, _label_filter(request))
    return JSONResponse({"sandboxes": [bodies.live_json(x) for x in found]})


@endpoint(_ONE)
async def show(request: Request, ctx: Ctx) -> Response:
    return JSONResponse(bodies.live_json(ctx.sandbox(request)))


@endpoint(_ONE)
async def delete(request: Request, ctx: Ctx) -> Response:
    live = ctx.registry.take(ctx.tenant, request.path_params["id"])
    await run_sync(ctx.limiter, ctx.registry.close, live)
    return Response(status_code=204)


@endpoint(_ONE + "/exec")
async def execute(request: Request, ctx: Ctx) -> Response:
    live = ctx.sandbox(request)
    args = bodies.exec_args(await bodies.read_json(request, ctx.config.max_json_bytes))
    argv = args.pop("argv")
    result = await run_sync(ctx.limiter, lambda: live.sandbox.exec(argv, **args))
    return JSONResponse(bodies.exec_json(result))


@endpoint(_ONE + "/code")
async def code(request: Request, ctx: Ctx) -> Response:
    live = ctx.sandbox(request)
    args = bodies.code_args(await bodies.read_json(request, ctx.config.max_json_bytes))
    source = args.pop("code")
    execution = await run_sync(ctx.limiter, lambda: live.sandbox.run_code(source, **args))
    return JSONResponse(bodies.execution_json(execution))


ROUTES = [
    Route("/v1/sandboxes", create, methods=["POST"]),
    Route("/v1/sandboxes", listing, methods=["GET"]),
    Route(_ONE, show, methods=["GET"]),
    Route(_ONE, delete, methods=["DELETE"]),
    Route(_ONE + "/exec", execute, methods=["POST"]),
    Route(_ONE + "/code", code, methods=["POST"]),
]
