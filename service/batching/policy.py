"""Which queued items ride together: a small pure function, unit-tested on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from service.priorities import INTERACTIVE, Priority

P = TypeVar("P")

# How many of the oldest items a batch is picked from, in batches: 32 x 32 = 1,024 items at
# the defaults, the default queue limit, so with default settings every queued item is a
# candidate. Past it the work per batch stops growing with the queue, where sorting the
# whole queue would. Not narrower: a narrower window packs batches with more padding, and on
# a CPU a batch costs about its padded tokens, so that padding costs more than the selection
# it saves (the figures: docs/design.md, "Batching").
WINDOW_BATCHES = 32


class BatchRun(NamedTuple):
    """One batch a request's items rode in: when it started (perf_counter), for how long, how many items."""

    started: float
    seconds: float
    items: int


@dataclass(eq=False)
class Ticket:
    """What one request's items went through: the longest queue wait of its items, and the
    batches they rode in (each batch once: when it started, how long it ran, its size).
    For timing headers and traces; the batcher fills it, nothing reads it back there.
    Traces are drawn after the fact from `queued_at` and `runs`, so the batch loop never
    touches a span or a trace context."""

    queue_s: float = 0.0
    runs: list[BatchRun] = field(default_factory=list)
    queued_at: float | None = None  # perf_counter when the items were queued
    _batches: set[int] = field(default_factory=set, repr=False)

    @property
    def batch_sizes(self) -> list[int]:
        return [run.items for run in self.runs]

    @property
    def inference_s(self) -> float:
        """Wall-clock seconds during which at least one of the request's batches ran: the
        union of their run intervals. Batches that ran side by side (on several sessions)
        count once, so this is never more than the request's own time, as the inference
        time of text-embeddings-inference is; a sum of the batches' runtimes would be."""
        runs = self.runs
        if len(runs) < 2:
            return runs[0].seconds if runs else 0.0
        total, reached = 0.0, float("-inf")
        for run in sorted(runs):  # by start
            end = run.started + run.seconds
            if end > reached:
                total += end - max(run.started, reached)
                reached = end
        return total

    def rode(self, waited_s: float, batch: int, size: int, seconds: float, started: float) -> None:
        self.queue_s = max(self.queue_s, waited_s)
        if batch not in self._batches:
            self._batches.add(batch)
            self.runs.append(BatchRun(started, seconds, size))


@dataclass(eq=False)
class Item(Generic[P]):
    """One input waiting for the runtime. `tokens` is its length after tokenization;
    `deadline` is on the loop's clock, `enqueued` on perf_counter's (the queue wait is
    measured from it, finer than a millisecond)."""

    payload: P
    tokens: int
    deadline: float
    enqueued: float
    future: asyncio.Future[Any] = field(repr=False)
    ticket: Ticket | None = field(default=None, repr=False)
    priority: Priority = INTERACTIVE


def select_batch(
    pending: Sequence[Item[P]],
    max_items: int,
    max_tokens: int,
    min_fill: float = 0.0,
    window: int | None = None,
    fill: Sequence[Item[P]] = (),
    max_fill: int | None = None,
) -> list[Item[P]]:
    """Pick the next batch from `pending` (oldest first).

    The oldest item always rides, even alone over the token budget, so nothing starves.
    The rest is filled by length affinity to it (closest token count first, then age),
    while the padded size, rows x longest row, stays within `max_tokens` and the share of
    real tokens in it stays at or above `min_fill`. Padding is compute spent on nothing:
    on a CPU, where a batch costs about its padded token count, a loosely packed batch is
    slower than its rows run apart.

    `fill` (oldest first) is considered only after every candidate of `pending`: the lower
    priority level, which takes the room the higher one leaves in the batch.

    Only the oldest `window` items of each are candidates (all of them when None): the work
    is bounded by the window, not the queue, and an item waits at most until it is in the
    window, then until it is the oldest.

    `max_fill`: at most this many items of `fill` (None: no bound).
    """
    if not pending:
        return []
    oldest = pending[0]
    chosen = [oldest]
    if max_items <= 1:
        return chosen
    bound = len(pending) if window is None else max(1, window)
    target = oldest.tokens
    longest = real = target
    fill_left = max_items if max_fill is None else max_fill
    for candidates, filling in ((pending[1:bound], False), (fill[:bound], True)):
        if filling and fill_left <= 0:
            break
        for item in _by_affinity(candidates, target):
            size = item.tokens
            padded = max(longest, size) * (len(chosen) + 1)
            if padded > max_tokens or real + size < min_fill * padded:
                continue
            if filling:
                if fill_left <= 0:
                    break
                fill_left -= 1
            chosen.append(item)
            if len(chosen) >= max_items:
                return chosen
            longest = max(longest, size)
            real += size
    return chosen


def _by_affinity(items: Sequence[Item[P]], target: int) -> list[Item[P]]:
    """Closest token count to `target` first; the sort is stable, so age breaks the ties."""
    distance = [abs(it.tokens - target) for it in items]
    return [items[i] for i in sorted(range(len(items)), key=distance.__getitem__)]
