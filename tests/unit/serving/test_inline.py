"""The padded-token limit of a fast-lane batch run on the event loop, from two timed runs."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine import inline
from service.engine.inline import fastest_run_s, padded_tokens, tokens_within


def test_the_limit_follows_the_line_through_the_two_timed_runs() -> None:
    # 2 ms at 16 tokens, 10 ms at 256: 1/30 ms a token, so a 20 ms budget reaches 16 + 540.
    assert tokens_within(0.020, 16, 0.002, 256, 0.010) == 556
    # 15 ms at 16 tokens, 75 ms at 256 (BERT-base-like): 0.25 ms a token, 20 ms reaches 36.
    assert tokens_within(0.020, 16, 0.015, 256, 0.075) == 36
    # Exactly at the budget: the long row itself.
    assert tokens_within(0.010, 16, 0.002, 256, 0.010) == 256


@pytest.mark.parametrize(
    ("budget", "short_s", "long_s"),
    [(0.0, 0.001, 0.002), (0.020, 0.021, 0.030), (-1.0, 0.001, 0.002)],
)
def test_no_batch_runs_on_the_loop_when_off_or_when_even_a_short_row_is_over_budget(
    budget: float, short_s: float, long_s: float
) -> None:
    assert tokens_within(budget, 16, short_s, 256, long_s) == 0


def test_a_long_row_timed_no_slower_than_the_short_one_gives_the_max_length() -> None:
    # Timing noise can make the long run look as fast: no slope, so nothing past the long row.
    assert tokens_within(0.020, 16, 0.003, 256, 0.002) == 256
    assert tokens_within(0.020, 16, 0.003, 16, 0.003) == 16


def test_padded_tokens_count_rows_times_the_longest_row_pairs_included() -> None:
    rows = [np.zeros(5, dtype=np.int64), np.zeros(9, dtype=np.int64)]
    assert padded_tokens(rows) == 18
    assert padded_tokens([np.zeros((2, 7), dtype=np.int64)]) == 7


class FakeClock:
    """The module's `time`, read only through perf_counter: each run advances it by as long
    as that run is meant to take, so the timings are exact on any machine."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


def test_the_fastest_of_the_timed_runs_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(inline, "time", clock)
    durations = iter([0.03, 0.002, 0.015])

    def run() -> None:
        clock.now += next(durations)

    assert fastest_run_s(run, repeats=3) == pytest.approx(0.002)
    assert next(durations, None) is None  # each of the three runs was timed
