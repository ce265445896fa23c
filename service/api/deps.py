"""Annotated dependencies shared by the routes, and the one translation of an HTTP request
into what the serving layer needs (`Call`)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Receive

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


def new_call(state: dict[str, Any], headers: dict[bytes, bytes], receive: Receive) -> Call:
    """The serving layer's view of a request, from its ASGI scope state (which the middleware
    reads back: the model for the access log, the timing for the headers, the call to release
    its models) and its raw headers; `receive` is the channel a disconnect comes on."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    def on_model(name: str) -> None:
        state["model"] = name

    timeout = headers.get(TIMEOUT_HEADER.encode())
    call = Call(timeout.decode("latin-1") if timeout is not None else None, state["entered_at"], disconnected, on_model)
    state["timing"] = call.timing
    state["call"] = call
    call.timing.ticket.on_queued = state.get("release_room")
    return call


async def get_call(request: Request) -> Call:
    return new_call(request.scope["state"], dict(request.scope["headers"]), request.receive)


CallOf = Annotated[Call, Depends(get_call)]
