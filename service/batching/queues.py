"""The queue of one model, one first-in first-out lane per priority level.

Which items form the next batch: interactive items first, and batch items that have waited
past the aging bound count as interactive, merged with them by age; the batch items still
young fill the room left in the batch (`select_batch`'s `fill`). So an interactive item
waits at most for the batches already running, never behind queued bulk work, and bulk work
always progresses: whatever the live load, a batch item is served as interactive once it
is older than the bound.

Room: the queue holds at most `max_items` items in all, and batch items at most `batch_room`
of them, so a bulk flood is refused (429) while live requests are still admitted.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from operator import attrgetter
from typing import Generic, TypeVar

from service.batching.policy import Item
from service.priorities import BATCH, INTERACTIVE, LEVELS, Priority

P = TypeVar("P")

Select = Callable[[Sequence[Item[P]], Sequence[Item[P]]], list[Item[P]]]

_enqueued = attrgetter("enqueued")


class LevelQueues(Generic[P]):
    def __init__(self) -> None:
        self._lanes: dict[Priority, deque[Item[P]]] = {level: deque() for level in LEVELS}

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def __bool__(self) -> bool:
        return any(self._lanes.values())

    def __iter__(self) -> Iterator[Item[P]]:
        for lane in self._lanes.values():
            yield from lane

    def count(self, level: Priority) -> int:
        return len(self._lanes[level])

    def append(self, item: Item[P]) -> None:
        self._lanes[item.priority].append(item)

    def oldest(self) -> Item[P] | None:
        heads = [lane[0] for lane in self._lanes.values() if lane]
        return min(heads, key=_enqueued) if heads else None

    def head(self, level: Priority) -> Item[P] | None:
        lane = self._lanes[level]
        return lane[0] if lane else None

    def clear(self) -> None:
        for lane in self._lanes.values():
            lane.clear()

    def keep(self, alive: Callable[[Item[P]], bool]) -> set[Priority]:
        """Drop every item `alive` refuses; the levels that lost any."""
        changed = set()
        for level, lane in self._lanes.items():
            kept = [item for item in lane if alive(item)]
            if len(kept) != len(lane):
                self._lanes[level] = deque(kept)
                changed.add(level)
        return changed

    def drop_dead_heads(self, alive: Callable[[Item[P]], bool]) -> set[Priority]:
        """Drop the refused items at the head of each lane; the levels that lost any."""
        changed = set()
        for level, lane in self._lanes.items():
            while lane and not alive(lane[0]):
                lane.popleft()
                changed.add(level)
        return changed

    def take(
        self, window: int, now: float, aged_before: float, drop: Callable[[Item[P]], object], select: Select[P]
    ) -> list[Item[P]]:
        """Take the next batch: `select(urgent, fill)` picks it from the live items of the
        window at the head of each lane (`now`: the loop's time, for deadlines; `drop` hears
        of each dead item there). Urgent: the interactive items and the batch items enqueued
        at or before `aged_before`, oldest first; fill: the younger batch items (urgent when
        nothing else is). The items not chosen go back to the head of their lane in their
        order: the cost does not grow with the queue behind the window."""
        heads = {level: list(islice(lane, window)) for level, lane in self._lanes.items()}
        live = {}
        for level, head in heads.items():
            live[level] = [item for item in head if item.deadline > now and not item.future.done()]
            if len(live[level]) < len(head):
                for item in head:
                    if item.deadline <= now or item.future.done():
                        drop(item)  # resolved and counted there
        bulk = live[BATCH]
        aged = 0
        while aged < len(bulk) and bulk[aged].enqueued <= aged_before:
            aged += 1
        urgent: Sequence[Item[P]] = live[INTERACTIVE]
        if aged:
            urgent = list(islice(heapq.merge(urgent, bulk[:aged], key=_enqueued), window))
        young = bulk[aged:]
        # Bulk work alone: its oldest item rides, the rest fill (as much as `select` lets them).
        batch = select(urgent, young) if urgent else select(young[:1], young[1:])
        # Only now off the queue: whatever happens above, every item is still in it.
        chosen = set(map(id, batch))
        for level, lane in self._lanes.items():
            for _ in range(len(heads[level])):
                lane.popleft()
            lane.extendleft(reversed([item for item in live[level] if id(item) not in chosen]))
        return batch
