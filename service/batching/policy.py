"""Which queued items ride together: a small pure function, unit-tested on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

P = TypeVar("P")


@dataclass(eq=False)
class Item(Generic[P]):
    """One input waiting for the runtime. `tokens` is its length after tokenization."""

    payload: P
    tokens: int
    deadline: float
    enqueued: float
    future: asyncio.Future[Any] = field(repr=False)


def select_batch(pending: Sequence[Item[P]], max_items: int, max_tokens: int, min_fill: float = 0.0) -> list[Item[P]]:
    """Pick the next batch from `pending` (oldest first).

    The oldest item always rides, even alone over the token budget, so nothing starves.
    The rest is filled by length affinity to it (closest token count first, then age),
    while the padded size, rows x longest row, stays within `max_tokens` and the share of
    real tokens in it stays at or above `min_fill`. Padding is compute spent on nothing:
    on a CPU, where a batch costs about its padded token count, a loosely packed batch is
    slower than its rows run apart.
    """
    if not pending:
        return []
    oldest = pending[0]
    chosen = [oldest]
    longest = oldest.tokens
    real = oldest.tokens
    by_affinity = sorted(range(1, len(pending)), key=lambda i: (abs(pending[i].tokens - oldest.tokens), i))
    for index in by_affinity:
        if len(chosen) >= max_items:
            break
        item = pending[index]
        padded = max(longest, item.tokens) * (len(chosen) + 1)
        if padded > max_tokens or real + item.tokens < min_fill * padded:
            continue
        chosen.append(item)
        longest = max(longest, item.tokens)
        real += item.tokens
    return chosen
