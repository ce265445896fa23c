"""Full garbage collections are moved to quiet moments.

Why: a full collection walks every object the collector tracks, and holds the event loop
meanwhile. Under a retry storm (many connections, each with its parser, buffers and last
request, and a queue of requests that live for seconds) each one is long, and Python starts
them often: the requests that wait seconds in the queue are old enough to count as
long-lived, and a quarter more of those triggers the next. Without the loop's other long
passes, they make the whole 429 tail (docs/design.md, "Other measured choices").
Nothing a request allocates is left in a reference cycle (tests/integration/test_cycles.py),
so those collections found nothing to free.

The rules: after start-up (everything loaded then is frozen out of the collector's view),
Python's own young collections go on unchanged, and full ones run here: when the service is
quiet and the last one is `QUIET_EVERY_S` old, or, whatever the load, once it is
`AT_LEAST_EVERY_S` old, so that whatever a rare path leaves in a cycle is still freed.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

QUIET_EVERY_S = 60.0
AT_LEAST_EVERY_S = 600.0
CHECK_EVERY_S = 1.0
# Python starts a full collection once this many young (generation 1) collections ran since
# the last; at the rate a busy service runs them, this one is never reached first
# (docs/design.md, "Other measured choices").
NEVER = 1 << 30


def defer_full_collections() -> None:
    """Leave full collections to `collect_when_quiet` (the young generations keep theirs)."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, NEVER)


def full_collection_due(since_last_s: float, quiet: bool) -> bool:
    return since_last_s >= AT_LEAST_EVERY_S or (quiet and since_last_s >= QUIET_EVERY_S)


async def collect_when_quiet(quiet: Callable[[], bool], clock: Callable[[], float] = time.monotonic) -> None:
    last = clock()
    while True:
        await asyncio.sleep(CHECK_EVERY_S)
        if full_collection_due(clock() - last, quiet()):
            gc.collect()
            last = clock()
