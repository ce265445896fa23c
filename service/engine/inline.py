"""Which fast-lane batches run on the event loop's own thread.

At low load the hop to the session's thread and back is most of what the service adds to
the engine: a thread woken on an idle CPU, then the loop woken by its result (the figures:
docs/design.md, "Inline runs on the event loop"). But a run on the loop blocks everything
else the loop does (reading other requests, health checks, 429s), so only a batch expected
to end within a small budget goes there: the fast lane runs only at low load anyway
(service/engine/model.py), and a batch over the budget, or any batch under load, still runs
on its session's thread.

The expected time comes from two timed runs of the fast session at start-up, one short row
and one row of the model's max length; a batch's cost on the CPU follows its padded token
count (rows x longest row), so the budget becomes a padded-token limit per model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

# The short probe: about a short sentence. Runs are timed this many times, the fastest kept
# (a start-up run can be slowed by others; a slower figure only lowers the limit).
PROBE_TOKENS = 16
REPEATS = 3


def fastest_run_s(run: Callable[[], object], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def tokens_within(budget_s: float, short: int, short_s: float, long: int, long_s: float) -> int:
    """The largest padded token count expected to run within `budget_s`, drawing a line
    through (short, short_s) and (long, long_s); 0 when even the short probe is over it."""
    if budget_s <= 0 or short_s > budget_s:
        return 0
    slope = (long_s - short_s) / (long - short) if long > short else 0.0
    if slope <= 0:
        return long  # the long row fits too; larger batches are not known to
    return max(short, short + int((budget_s - short_s) / slope))


def padded_tokens(rows: Sequence[np.ndarray]) -> int:
    """What a batch costs on the CPU: rows x its longest row (a pair row is (2, n))."""
    return len(rows) * int(max(row.shape[-1] for row in rows))
