"""Which queued items ride together: a small pure function, unit-tested on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

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


def select_batch(
    pending: Sequence[Item[P]], max_items: int, max_tokens: int, min_fill: float = 0.0, window: int | None = None
) -> list[Item[P]]:
    """Pick the next batch from `pending` (oldest first).

    The oldest item always rides, even alone over the token budget, so nothing starves.
    The rest is filled by length affinity to it (closest token count first, then age),
    while the padded size, rows x longest row, stays within `max_tokens` and the share of
    real tokens in it stays at or above `min_fill`. Padding is compute spent on nothing:
    on a CPU, where a batch costs about its padded token count, a loosely packed batch is
    slower than its rows run apart.

    Only the oldest `window` items are candidates (all of them when None): the work is
    bounded by the window, not the queue, and an item waits at most until it is in the
    window, then until it is the oldest.
    """
    if not pending:
        return []
    count = len(pending) if window is None else max(1, min(window, len(pending)))
    oldest = pending[0]
    chosen = [oldest]
    if max_items <= 1:
        return chosen
    target = oldest.tokens
    tokens = [pending[i].tokens for i in range(count)]
    distance = [abs(t - target) for t in tokens]
    # The sort is stable: equal distances stay in queue order, so age breaks the ties.
    by_affinity = sorted(range(1, count), key=distance.__getitem__)
    longest = real = target
    for index in by_affinity:
        size = tokens[index]
        padded = max(longest, size) * (len(chosen) + 1)
        if padded > max_tokens or real + size < min_fill * padded:
            continue
        chosen.append(pending[index])
        if len(chosen) >= max_items:
            break
        longest = max(longest, size)
        real += size
    return chosen
