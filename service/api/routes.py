"""The model routes, registered from the task registry: one endpoint per declared route, each
a thin shell around the route's `handle` (authorisation, the request's `Call`, the reply
rendered as JSON). The direct path (direct.py) runs the same `handle` and `render`."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response

from service.api.deps import Authorized, CallOf, State, with_body
from service.api.responses import JSONBytes
from service.api.schemas import MODEL_ROUTE_RESPONSES
from service.tasks.registry import TASKS
from service.tasks.spec import Reply, Route


def render(reply: Reply) -> Response:
    return JSONBytes(reply.body, headers=reply.headers)


def endpoint(route: Route) -> Callable[..., Awaitable[Response]]:
    """The framework's endpoint for a route: its parameters declared on its signature (the
    body's model comes from the declaration, so FastAPI validates and documents it)."""
    handle = route.handle

    async def run(body: Any, state: Any, call: Any, _: None) -> Response:
        return render(await handle(body, state, with_body(call, body)))

    def param(name: str, annotation: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation)

    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [param("body", route.body), param("state", State), param("call", CallOf), param("_", Authorized)],
        return_annotation=Response,
    )
    run.__name__ = handle.__name__
    run.__doc__ = handle.__doc__
    return run


def install(app: FastAPI) -> None:
    for task in TASKS:
        for route in task.routes:
            app.add_api_route(
                route.path,
                endpoint(route),
                methods=["POST"],
                response_model=route.response,
                responses=MODEL_ROUTE_RESPONSES,
                response_class=JSONBytes,
            )
