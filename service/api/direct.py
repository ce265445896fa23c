"""The direct path: a well-formed request to a model route runs the route's own `handle`
without the framework's routing, dependency injection and exception layers.

Why: at concurrency 1 those layers cost a large share of what the service adds to the model
on the event loop that every request shares (docs/design.md, "The direct path").

What takes it: a POST to a model route (any route the task registry declares) with
`Content-Type: application/json`, a body that parses and that the route's own model
validates, a valid API key when keys are set, and no CORS origin involved. It then runs the
route's `handle` with the same `Call` (`deps.new_call`) and renders its reply with the same
function as the framework's endpoint (`routes.render`); a `ServiceError` is answered by the
same renderer. Anything else (a body that does not parse or validate, a missing key, another
content type) goes the full way, and so gets the answer it always got: its 422 or 401 comes
from there, word for word.
"""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.api.deps import needs_full_path, new_call, with_body
from service.api.errors import respond
from service.api.routes import render
from service.errors import ServiceError
from service.request_context import context_of
from service.state import AppState
from service.tasks.registry import routes
from service.tasks.spec import Route

ROUTES = {path: route for path, (_, route) in routes().items()}


def _json(headers: dict[bytes, bytes]) -> bool:
    media, _, _ = headers.get(b"content-type", b"").partition(b";")
    return media.strip().lower() == b"application/json"


def parse(state: AppState, scope: Scope, headers: dict[bytes, bytes], body: bytes) -> tuple[Route, BaseModel] | None:
    """The route and its validated body when the request can take the direct path, else None."""
    route = ROUTES.get(scope["path"])
    if route is None or scope["method"] != "POST" or not _json(headers) or needs_full_path(state, headers):
        return None
    try:
        # Python-mode validation of the parsed object, as the framework does it: the same
        # rules decide, only the JSON parser differs (and anything it refuses goes the full way).
        return route, route.body.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError):
        return None


async def dispatch(
    state: AppState,
    route: Route,
    body: BaseModel,
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: dict[bytes, bytes],
) -> None:
    context = context_of(scope)
    context.route_path = scope["path"]
    response: Response
    try:
        call = with_body(new_call(context, headers, receive), body)
        response = render(await route.handle(body, state, call))
    except ServiceError as exc:
        response = respond(exc, context.request_id)
    await response(scope, receive, send)
