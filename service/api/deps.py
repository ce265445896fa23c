"""Annotated dependencies shared by the routes."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from service.api.state import AppState
from service.errors import InvalidInput, ServiceError, Unauthorized

T = TypeVar("T")


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in its
# thread pool, a thread hop per request that cost more than everything they do.
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.bertserve
    return state


State = Annotated[AppState, Depends(get_state)]


async def authorize(request: Request, state: State) -> None:
    if not state.api_keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = token.strip().encode()
    # Compare against every key, always, each in constant time: nothing to learn from timing.
    matched = False
    for key in state.api_keys:
        matched |= hmac.compare_digest(given, key)
    if scheme.lower() != "bearer" or not matched:
        raise Unauthorized("missing or invalid API key: send Authorization: Bearer <key>")


async def authorize_metrics(request: Request, state: State) -> None:
    if state.settings.protect_metrics:
        await authorize(request, state)


Authorized = Annotated[None, Depends(authorize)]
MetricsAuthorized = Annotated[None, Depends(authorize_metrics)]


class ClientGone(ServiceError):
    """The client closed the connection; nobody reads the answer (logged as 499)."""

    status = 499
    type = "client_closed"


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, but give up as soon as the client goes away: its queued items are then
    cancelled and the batcher drops them before they cost compute."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone("client closed the connection")


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def text_inputs(value: str | list[str], max_inputs: int, max_chars: int, param: str = "inputs") -> list[str]:
    """The request's texts as a list, within the configured limits (the schema has already
    refused empty lists and blank texts)."""
    texts = [value] if isinstance(value, str) else value
    if len(texts) > max_inputs:
        raise InvalidInput(f"{param} has {len(texts)} items, over the limit of {max_inputs}", param=param)
    for index, text in enumerate(texts):
        where = param if isinstance(value, str) else f"{param}[{index}]"
        if len(text) > max_chars:
            raise InvalidInput(f"{where} has {len(text)} characters, over the limit of {max_chars}", param=where)
    return texts
