"""The steps every task runs, in one order, so the same bad request gets the same answer on
every route:

1. the texts within the request limits (count, characters)        422
2. the deadline (a header may lower it), the priority's header    422
3. admission: ready, not draining, not stalled                     503
4. the model: named, or the default for the task                   404
5. the task's own options against the model (e.g. dimensions)      422
6. a request bigger than the whole queue can never fit             422
7. room in the queue now                                           429
8. tokenize (too long with truncate off)                           422
9. queue, batch, run; wait within the deadline, or the client left 504, 499, 500
10. post-process, in the task's module

Steps 1-5 are `admit`, 6-9 are `run`; `process` is both. A task whose items depend on the
model it got (rerank: pairs for a cross-encoder, texts for an embedding model) calls them
apart. Nothing here knows HTTP: the HTTP layer hands in a `Call` (the deadline already read
from its header) and gets plain values back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

from service.batching import Ticket
from service.engine.seam import ServedModel
from service.errors import ClientClosed, InvalidInput
from service.priorities import INTERACTIVE, Priority
from service.runtime.tokenizer import Cut, InputTooLong
from service.settings import env_name
from service.state import AppState

if TYPE_CHECKING:
    from service.request_context import Departure

T = TypeVar("T")
Pair = tuple[str, str]


async def _never() -> None:
    await asyncio.Event().wait()


@dataclass
class Timing:
    """Where a request's time went, for the timing headers and traces."""

    tokenize_s: float = 0.0
    tokenize_started: float | None = None  # perf_counter, for the trace's tokenize span
    ticket: Ticket = field(default_factory=Ticket)


@dataclass
class Call:
    """One request as the serving layer sees it."""

    # The client's own limit in seconds (the HTTP layer reads it from a header), or None: the
    # request then has the service's whole timeout.
    timeout_s: float | None = None
    # What was wrong with the client's limit as sent: refused at its step of the check order.
    timeout_error: InvalidInput | None = None
    # The level its items queue at: from the body's `priority` when it has one, else from the
    # X-Priority header (the HTTP layer reads both), else interactive. A header naming no
    # level is refused beside the deadline's, unless the body says which.
    priority: Priority = INTERACTIVE
    priority_error: InvalidInput | None = None
    # When the request entered the app (monotonic): one accepted before a drain is served.
    entered_at: float = field(default_factory=time.monotonic)
    disconnected: Callable[[], Awaitable[None]] = _never
    # Told when the client leaves, where the server says so itself (bertserve's protocol
    # adapter); None: `disconnected` is watched instead.
    departure: Departure | None = None
    # Told the resolved model's name as soon as it is known, for metrics and the access log.
    on_model: Callable[[str], None] = field(default=lambda _: None)
    timing: Timing = field(default_factory=Timing)
    # Told once the request's items are queued (or ran at once): the HTTP layer's room
    # reservation for the request ends then (service/backpressure.py).
    queued: Callable[[], None] = field(default=lambda: None)
    # The models this request was admitted on, counted as in use until `release` (a model
    # replaced by a reload is freed only when no request uses it).
    in_use: list[ServedModel] = field(default_factory=list)

    def use(self, model: ServedModel) -> None:
        model.users += 1
        self.in_use.append(model)
        self.on_model(model.name)

    def release(self) -> None:
        for model in self.in_use:
            model.users -= 1
        self.in_use.clear()

    def prioritise(self, asked: Priority | None) -> None:
        """The body's priority, when it states one: it wins over the header's, which is for
        clients that cannot add a field to the body."""
        if asked is not None:
            self.priority, self.priority_error = asked, None


@dataclass(frozen=True)
class Texts:
    """The request's texts (or text pairs) and the wire names they came under, to name a
    bad one in an error."""

    items: list[str] | list[Pair]
    param: str
    single: bool = False
    names: list[str] | None = None  # per-item wire names, when they are not param[i]
    max_second_tokens: int | None = None  # cut each pair's second text (or each text) to this

    @classmethod
    def of(cls, value: str | Sequence[str | Sequence[str]], param: str) -> Texts:
        """One text, a list of texts, or a list of [first, second] pairs; not a mix."""
        if isinstance(value, str):
            return cls([value], param, single=True)
        if not value:  # where the schema allows an empty list (OpenAI's token-id branch)
            raise InvalidInput(f"{param} is empty: send at least one text", param=param)
        kinds = {isinstance(item, str) for item in value}
        if len(kinds) > 1:
            raise InvalidInput(f"{param} mixes single texts and pairs: send one kind per request", param=param)
        if kinds == {True}:
            return cls([str(item) for item in value], param)
        return cls([(item[0], item[1]) for item in value], param)

    @property
    def pairs(self) -> bool:
        return bool(self.items) and isinstance(self.items[0], tuple)

    def where(self, index: int) -> str:
        if self.names is not None:
            return self.names[index]
        return self.param if self.single else f"{self.param}[{index}]"

    def strings(self) -> list[tuple[str, str]]:
        """(wire name, text) for every string, pairs flattened: what the limits apply to."""
        out = []
        for index, item in enumerate(self.items):
            where = self.where(index)
            if isinstance(item, tuple):
                out += [(f"{where}[0]", item[0]), (f"{where}[1]", item[1])]
            else:
                out.append((where, item))
        return out


@dataclass(frozen=True)
class Admitted:
    model: ServedModel
    deadline: float
    priority: Priority = INTERACTIVE


@dataclass(frozen=True)
class Output:
    model: ServedModel
    rows: np.ndarray
    tokens: int
    cuts: list[Cut]  # where each item was cut to the model's max length (None: read whole)


ModelCheck = Callable[[ServedModel], None]
ItemsLimit = Literal["max_inputs", "max_rerank_texts"]


def admit(
    state: AppState,
    call: Call,
    task: str,
    model_name: str | None,
    texts: Texts,
    items_limit: ItemsLimit = "max_inputs",
    check_model: ModelCheck | None = None,
    whole: bool = False,
) -> Admitted:
    """Steps 1 to 5: everything that can refuse the request before it costs anything.
    `items_limit`: the setting that bounds the request's items. `whole`: single texts are
    read whole (`stride`), so the characters are bounded per request, not per text."""
    settings = state.settings
    if whole and not texts.pairs:
        check_whole_limits(texts, settings.max_inputs, settings.max_input_chars)
    else:
        check_limits(texts, getattr(settings, items_limit), settings.max_input_chars, items_limit)
    if call.timeout_error is not None:
        raise call.timeout_error
    if call.priority_error is not None:
        raise call.priority_error
    deadline = state.deadline(call.timeout_s)
    state.admit(call.entered_at)
    model = state.resolve(task, model_name)
    call.use(model)
    if texts.pairs and not model.manifest.pairs:
        raise InvalidInput(
            f"model {model.name!r} takes single texts, not pairs (export it with --pairs if it was trained on pairs)",
            param=texts.param,
        )
    if check_model is not None:
        check_model(model)
    return Admitted(model, deadline, call.priority)


async def run(call: Call, admitted: Admitted, texts: Texts, truncate: bool) -> Output:
    """Steps 6 to 9: queue the items, batched with everything else, and wait for the rows."""
    model = admitted.model
    check_queue(model, len(texts.items), texts.param, admitted.priority)
    started = call.timing.tokenize_started = time.perf_counter()
    try:
        encoded = await model.tokenize(texts.items, truncate, texts.max_second_tokens)
    except InputTooLong as exc:
        raise too_long(texts, exc) from exc
    finally:
        call.timing.tokenize_s += time.perf_counter() - started
    ids = encoded.ids
    rows = await run_ids(call, admitted, ids)
    return Output(model, np.stack(rows), sum(r.shape[-1] for r in ids), encoded.cuts)


def coverage(texts: Texts, cuts: Sequence[Cut]) -> tuple[list[bool], list[int | list[int]]]:
    """Per input: whether the model read only its beginning (cut to its max length), and how
    many of its characters it read (of each text, for a pair): the `truncated` and `covered`
    of an answer. A whole input costs its length: nothing is re-read."""
    truncated = [cut is not None for cut in cuts]
    covered: list[int | list[int]] = []
    for item, cut in zip(texts.items, cuts, strict=True):
        if cut is None:
            covered.append(len(item) if isinstance(item, str) else [len(item[0]), len(item[1])])
        else:
            covered.append(cut if isinstance(cut, int) else list(cut))
    return truncated, covered


def check_queue(model: ServedModel, count: int, param: str, priority: Priority = INTERACTIVE) -> None:
    """Steps 6 and 7: a request bigger than the whole queue (422), then room now (429), at
    the request's priority level."""
    model.check_admission(count, param, priority)  # refuse before spending the tokenizer on it


def too_long(texts: Texts, exc: InputTooLong) -> InvalidInput:
    where = texts.where(exc.index)
    return InvalidInput(
        f"{where} has {exc.tokens} tokens, over the model's max length of {exc.max_length}; "
        "shorten it or pass truncate=true",
        param=where,
    )


async def run_ids(call: Call, admitted: Admitted, ids: Sequence[np.ndarray], states: bool = False) -> list[np.ndarray]:
    """Step 9 for items already tokenized: one output row per item, in order (with `states`,
    each item's pooled row and token states: ServedModel.submit)."""
    # At low load a single short input may run at once on this thread (the fast lane's inline
    # run): nothing to wait for but one turn of the loop, so no disconnect watcher either.
    # Bulk work always queues: the shortcut is for live latency, and bulk comes many at once.
    model, ticket, priority = admitted.model, call.timing.ticket, admitted.priority
    live = priority == INTERACTIVE and not states
    now = await model.run_now(ids, admitted.deadline, ticket) if live else None
    if now is not None:
        call.queued()  # ran: any room reserved for the request is free again
        return now
    pending = model.submit(ids, admitted.deadline, ticket, priority, states)
    call.queued()
    return await until_disconnect(call, pending)


async def process(
    state: AppState,
    call: Call,
    task: str,
    model_name: str | None,
    texts: Texts,
    truncate: bool,
    check_model: ModelCheck | None = None,
) -> Output:
    """Steps 1 to 9 for one request; the task module does step 10 on the rows."""
    admitted = admit(state, call, task, model_name, texts, check_model=check_model)
    return await run(call, admitted, texts, truncate)


def check_limits(texts: Texts, max_items: int, max_chars: int | None, items_setting: str = "max_inputs") -> None:
    """The schema has already refused empty lists and blank texts; these bounds are settings,
    and a refusal names the one to raise."""
    if len(texts.items) > max_items:
        raise InvalidInput(
            f"{texts.param} has {len(texts.items)} items, over the limit of {max_items} ({env_name(items_setting)})",
            texts.param,
        )
    for where, text in texts.strings():
        if max_chars is not None and len(text) > max_chars:
            raise InvalidInput(too_many_chars(where, len(text), max_chars), param=where)


def check_whole_limits(texts: Texts, max_items: int, max_chars: int) -> None:
    """Texts read whole in windows: one may be as long as the request's whole allowance of
    characters (max_inputs x max_input_chars), the most any request may have tokenized; the
    windows they take are counted once tokenized (BERTSERVE_MAX_WINDOWS)."""
    check_limits(texts, max_items, None)
    total = sum(len(text) for _, text in texts.strings())
    if total > max_items * max_chars:
        raise InvalidInput(
            f"{texts.param} has {total} characters, over the limit of {max_items * max_chars} for texts read whole "
            f"({env_name('max_inputs')} x {env_name('max_input_chars')})",
            param=texts.param,
        )


def too_many_chars(where: str, chars: int, max_chars: int) -> str:
    return f"{where} has {chars} characters, over the limit of {max_chars} ({env_name('max_input_chars')})"


async def until_disconnect(call: Call, work: Awaitable[T]) -> T:
    """Await `work`, but give up as soon as the client goes away: its queued items are then
    cancelled and the batcher drops them before they cost compute."""
    departure = call.departure
    if departure is None:
        return await _watching(call, work)
    # The server tells of the departure: it cancels this task, as asyncio.timeout does, and
    # the cancellation reaches what `work` waits on. No watcher task and no asyncio.wait: a
    # request pays about 8 us less for being watched (docs/design.md, "The request path").
    task = asyncio.current_task()
    assert task is not None
    departure.on_leave(task.cancel)
    if departure.left:  # gone already: the cancellation meets `work` at its first wait
        task.cancel()
    try:
        return await work
    except asyncio.CancelledError:
        if departure.left and task.uncancel() == 0:  # ours alone, not the server's own cancel
            raise ClientClosed("client closed the connection") from None
        raise
    finally:
        departure.on_leave(None)


async def _watching(call: Call, work: Awaitable[T]) -> T:
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
