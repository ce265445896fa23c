"""Annotated dependencies shared by the routes, and the one translation of an HTTP request
into what the serving layer needs (`Call`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import Receive

from service.errors import InvalidInput, Unauthorized
from service.priorities import LEVELS, parse_priority
from service.request_context import RequestContext, context_of
from service.state import AppState
from service.tasks.common import Call
from service.tasks.wire import StrictRequest

TIMEOUT_HEADER = b"x-request-timeout"
PRIORITY_HEADER = b"x-priority"


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in its
# thread pool, a thread hop per request that cost more than everything they do.
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.bertserve
    return state


State = Annotated[AppState, Depends(get_state)]


def key_matches(keys: list[bytes], authorization: str) -> bool:
    """Whether an Authorization header value is `Bearer <one of the keys>`."""
    scheme, _, token = authorization.partition(" ")
    given = token.strip().encode()
    # Compare against every key, always, each in constant time: nothing to learn from timing.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    return scheme.lower() == "bearer" and matched


def needs_full_path(state: AppState, headers: dict[bytes, bytes]) -> bool:
    """Whether a request must go through the framework whatever shortcut it could take (the
    fast 429, the direct path): a cross-origin request when CORS is on (its answer needs the
    CORS headers), or one without a valid API key when keys are set (its 401 is decided there)."""
    if state.settings.cors_origins and b"origin" in headers:
        return True
    return bool(state.api_keys) and not key_matches(
        state.api_keys, headers.get(b"authorization", b"").decode("latin-1")
    )


async def authorize(request: Request, state: State) -> None:
    if state.api_keys and not key_matches(state.api_keys, request.headers.get("authorization", "")):
        raise Unauthorized("missing or invalid API key: send Authorization: Bearer <key>")


async def authorize_metrics(request: Request, state: State) -> None:
    if state.settings.protect_metrics:
        await authorize(request, state)


Authorized = Annotated[None, Depends(authorize)]
MetricsAuthorized = Annotated[None, Depends(authorize_metrics)]


def new_call(context: RequestContext, headers: dict[bytes, bytes], receive: Receive) -> Call:
    """The serving layer's view of a request, hung off its context (which the middleware
    reads back: the model for the access log, the timing for the headers, the call to release
    its models) from its raw headers; `receive` is the channel a disconnect comes on."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    def on_model(name: str) -> None:
        context.model = name

    call = Call(
        entered_at=context.entered_at, disconnected=disconnected, departure=context.departure, on_model=on_model
    )
    timeout = headers.get(TIMEOUT_HEADER)
    if timeout is not None:
        call.timeout_s, call.timeout_error = _timeout(timeout)
    priority = headers.get(PRIORITY_HEADER)
    if priority is not None:
        level = parse_priority(priority.decode("latin-1").strip().lower())
        if level is None:
            name = PRIORITY_HEADER.decode()
            call.priority_error = InvalidInput(f"{name} must be one of {', '.join(LEVELS)}", param=name)
        else:
            call.priority = level
    if context.release_room is not None:
        call.queued = context.release_room
    context.call = call
    return call


def with_body(call: Call, body: object) -> Call:
    """The call once its body is validated: a priority the body states wins over the header's."""
    if isinstance(body, StrictRequest):
        call.prioritise(body.level())
    return call


def _timeout(header: bytes) -> tuple[float | None, InvalidInput | None]:
    """The client's limit in seconds, or why it is refused (the serving layer refuses it in
    its place in the check order)."""
    try:
        asked = float(header)
    except ValueError:
        asked = float("nan")
    if not asked > 0:  # also refuses NaN
        name = TIMEOUT_HEADER.decode()
        return None, InvalidInput(f"{name} must be a positive number of seconds", param=name)
    return asked, None


async def get_call(request: Request) -> Call:
    return new_call(context_of(request.scope), dict(request.scope["headers"]), request.receive)


CallOf = Annotated[Call, Depends(get_call)]
