"""Annotated dependencies shared by the routes, and the one translation of an HTTP request
into what the serving layer needs (`Call`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.errors import Unauthorized
from service.serving.common import Call
from service.state import TIMEOUT_HEADER, AppState


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


async def authorize(request: Request, state: State) -> None:
    if state.api_keys and not key_matches(state.api_keys, request.headers.get("authorization", "")):
        raise Unauthorized("missing or invalid API key: send Authorization: Bearer <key>")


async def authorize_metrics(request: Request, state: State) -> None:
    if state.settings.protect_metrics:
        await authorize(request, state)


Authorized = Annotated[None, Depends(authorize)]
MetricsAuthorized = Annotated[None, Depends(authorize_metrics)]


async def get_call(request: Request) -> Call:
    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    def on_model(name: str) -> None:
        request.state.model = name

    call = Call(request.headers.get(TIMEOUT_HEADER), request.state.entered_at, disconnected, on_model)
    request.state.timing = call.timing  # the middleware turns it into timing headers
    request.state.call = call  # the middleware releases its models once it is answered
    call.timing.ticket.on_queued = getattr(request.state, "release_room", None)
    return call


CallOf = Annotated[Call, Depends(get_call)]
