"""The in-process mode: the service's own app, its lifespan (load, warm up, release) and its
route handlers, on a local model repository, without HTTP. Each line is validated by its
route's body model and answered by its route's `handle`, and its answer or error rendered as
the route renders it, so a body equals what the route answers over HTTP.

Lines go to the engine sorted by length, in chunks of `CHUNK_LINES` (the rest of the file
stays on disk): rows of a length ride together, with little padding, as the raw engine's
length-sorted loop runs them. The service's request timeout and queue limit are raised
unless set, since every line is already waiting on this job and none on a client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from service.api.deps import with_body
from service.api.errors import invalid_input
from service.app import create_app
from service.batch_jobs.lines import Bad, Request, answered
from service.errors import Overloaded, ServiceError
from service.http_errors import render
from service.priorities import BATCH
from service.request_ids import new_request_id
from service.settings import Settings
from service.state import AppState
from service.tasks.common import Call
from service.tasks.registry import routes

log = logging.getLogger("bertserve.run_batch")

# Lines read, then sorted by length, at a time: 8,192 lines of the largest requests the
# default limits allow stay within a few hundred MB; typical lines, a few MB.
CHUNK_LINES = 8192
# A day: a line waits for the job, not for a client that may leave.
TIMEOUT_S = 86_400.0
ROUTES = {path: route for path, (_, route) in routes().items()}


def settings_for(models: Path, workers: int) -> Settings:
    """The service's settings (BERTSERVE_* as set), on `models`, with room for every line in
    flight: the queue holds `workers` requests of the largest size."""
    base = Settings(models=models)
    overrides: dict[str, Any] = {"models": models}
    if "request_timeout_s" not in base.model_fields_set:
        overrides["request_timeout_s"] = TIMEOUT_S
    if "max_queue_items" not in base.model_fields_set:
        overrides["max_queue_items"] = workers * max(base.max_inputs, base.max_rerank_texts)
    return Settings(**overrides)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[AppState]:
    """The app's state once its models are loaded and warmed up; released on the way out."""
    app = create_app(settings)
    state: AppState = app.state.bertserve
    async with app.router.lifespan_context(app):
        while (reason := state.unready_reason()) is not None:
            if state.load_error:
                raise RuntimeError(reason)
            await asyncio.sleep(0.05)  # the load runs in the background, as in the server
        yield state


def sorted_chunks(items: Iterable[Request | Bad], chunk: int = CHUNK_LINES) -> Iterator[Request | Bad]:
    """Requests by length within each chunk of `chunk` of them; bad lines at once."""
    pending: list[Request] = []
    for item in items:
        if isinstance(item, Bad):
            yield item
            continue
        pending.append(item)
        if len(pending) >= chunk:
            yield from sorted(pending, key=lambda r: r.size)
            pending = []
    yield from sorted(pending, key=lambda r: r.size)


class Answerer:
    """One line answered by its route's handler, as the route would answer it."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, request: Request) -> tuple[bytes, bool]:
        route = ROUTES[request.url]
        request_id = new_request_id()
        try:
            body = route.body.model_validate(request.body)
        except ValidationError as exc:
            return self._error(request, invalid_input(exc.errors()), request_id)
        while True:
            # At batch priority, as the --url mode sends: every line queues and rides in
            # batches, where an interactive one would run alone at once whenever the queue
            # is empty (the inline fast lane), and the lines would go one by one.
            call = with_body(Call(priority=BATCH), body)
            try:
                reply = await route.handle(body, self.state, call)
            except Overloaded:
                # Only when the queue limit was set lower than the job's lines in flight.
                await asyncio.sleep(0.01)
                continue
            except ServiceError as exc:
                return self._error(request, exc, request_id)
            finally:
                call.release()
            break
        return answered(
            request.custom_id, 200, request_id, orjson.dumps(reply.body, option=orjson.OPT_SERIALIZE_NUMPY)
        ), False

    def _error(self, request: Request, error: ServiceError, request_id: str) -> tuple[bytes, bool]:
        status, _, body = render(error, request_id)
        return answered(request.custom_id, status, request_id, body), True
