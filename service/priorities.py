"""The priority levels a request is served at, shared by every layer that carries one.

Live requests are `interactive`, the default; bulk work says `batch`. Interactive items are
served first and batch items fill the room left in a batch; a batch item that has waited past
the aging bound is served as interactive (service/batching/queues.py).
"""

from __future__ import annotations

from typing import Literal

Priority = Literal["interactive", "batch"]
INTERACTIVE: Priority = "interactive"
BATCH: Priority = "batch"
LEVELS: tuple[Priority, ...] = (INTERACTIVE, BATCH)


def parse_priority(value: str) -> Priority | None:
    """The level a wire value names, or None when it names none."""
    for level in LEVELS:
        if value == level:
            return level
    return None
