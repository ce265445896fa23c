"""The steps every task runs, in one order, so the same bad request gets the same answer on
every route:

1. the texts within the request limits (count, characters)        422
2. the deadline (a header may lower it)                            422
3. admission: ready, not draining, not stalled                     503
4. the model: named, or the only one of the task                   404
5. the task's own options against the model (e.g. dimensions)      422
6. a request bigger than the whole queue can never fit             422
7. room in the queue now                                           429
8. tokenize (too long with truncate off)                           422
9. queue, batch, run; wait within the deadline, or the client left 504, 499, 500
10. post-process, in the task's module

Nothing here knows HTTP: a route hands in a `Call` (the header value and a way to hear of a
disconnect) and gets plain values back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from service.errors import ClientClosed, InvalidInput
from service.runtime.tokenizer import InputTooLong
from service.serving.model import ServedModel
from service.state import AppState

T = TypeVar("T")


async def _never() -> None:
    await asyncio.Event().wait()


@dataclass
class Call:
    """One request as the serving layer sees it."""

    timeout_header: str | None = None
    # When the request entered the app (monotonic): one accepted before a drain is served.
    entered_at: float = field(default_factory=time.monotonic)
    disconnected: Callable[[], Awaitable[None]] = _never
    # Told the resolved model's name as soon as it is known, for metrics and the access log.
    on_model: Callable[[str], None] = field(default=lambda _: None)


@dataclass(frozen=True)
class Texts:
    """The request's texts and the wire name they came under, to name a bad one."""

    items: list[str]
    param: str
    single: bool

    @classmethod
    def of(cls, value: str | list[str], param: str) -> Texts:
        return cls([value] if isinstance(value, str) else list(value), param, isinstance(value, str))

    def where(self, index: int) -> str:
        return self.param if self.single else f"{self.param}[{index}]"


@dataclass(frozen=True)
class Output:
    model: ServedModel
    rows: np.ndarray
    tokens: int


ModelCheck = Callable[[ServedModel], None]


async def serve(
    state: AppState,
    call: Call,
    task: str,
    model_name: str | None,
    texts: Texts,
    truncate: bool,
    check_model: ModelCheck | None = None,
) -> Output:
    """Steps 1 to 9 for one request; the task module does step 10 on the rows."""
    settings = state.settings
    _check_limits(texts, settings.max_inputs, settings.max_input_chars)
    deadline = state.deadline(call.timeout_header)
    state.admit(call.entered_at)
    model = state.resolve(task, model_name)
    call.on_model(model.name)
    if check_model is not None:
        check_model(model)
    count = len(texts.items)
    if count > model.batcher.max_queue_items:
        raise InvalidInput(
            f"{texts.param} has {count} items, more than the model's whole queue "
            f"({model.batcher.max_queue_items}): split the request",
            param=texts.param,
        )
    model.batcher.check_room(count)  # refuse before spending the tokenizer on it
    try:
        ids = await model.tokenize(texts.items, truncate)
    except InputTooLong as exc:
        where = texts.where(exc.index)
        raise InvalidInput(
            f"{where} has {exc.tokens} tokens, over the model's max length of {exc.max_length}; "
            "shorten it or pass truncate=true",
            param=where,
        ) from exc
    rows = await until_disconnect(call, model.run(ids, deadline))
    return Output(model, rows, sum(r.shape[-1] for r in ids))


def _check_limits(texts: Texts, max_inputs: int, max_chars: int) -> None:
    """The schema has already refused empty lists and blank texts; these bounds are settings."""
    if len(texts.items) > max_inputs:
        raise InvalidInput(
            f"{texts.param} has {len(texts.items)} items, over the limit of {max_inputs}", param=texts.param
        )
    for index, text in enumerate(texts.items):
        if len(text) > max_chars:
            where = texts.where(index)
            raise InvalidInput(f"{where} has {len(text)} characters, over the limit of {max_chars}", param=where)


async def until_disconnect(call: Call, work: Awaitable[T]) -> T:
    """Await `work`, but give up as soon as the client goes away: its queued items are then
    cancelled and the batcher drops them before they cost compute."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(call.disconnected())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientClosed("client closed the connection")
