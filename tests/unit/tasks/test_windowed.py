"""Pooling a long text's windows (classify/post.py, embed/post.py) and the window arithmetic of
service/tasks/windowed.py, on hand-made rows and windows; the model-level parity is in
tests/integration/test_long_inputs.py."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidInput
from service.runtime.windows import Split, Window
from service.tasks.classify.post import pooled_scores, scores
from service.tasks.common import Texts
from service.tasks.embed.post import pool_windows
from service.tasks.windowed import check_windows, new_tokens, span


def window(content: int, start: int = 0, offsets: bool = True) -> Window:
    """[CLS], `content` one-character tokens a space apart from `start`, [SEP]."""
    n = content + 2
    special = np.zeros(n, dtype=bool)
    special[[0, -1]] = True
    spans = np.zeros((n, 2), dtype=np.int64)
    spans[1:-1, 0] = start + 2 * np.arange(content)
    spans[1:-1, 1] = spans[1:-1, 0] + 1
    ids = np.arange(n, dtype=np.int64)
    return Window(ids, np.zeros(n, dtype=np.int64), ("t",) * n, spans if offsets else None, special)


def test_mean_pooling_averages_the_logits_then_applies_the_function() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 4.0]], dtype=np.float32)
    (mean,) = pooled_scores([logits], "softmax", "mean")
    assert mean == pytest.approx(scores(np.array([[1.0, 2.0]]), "softmax")[0], abs=1e-15)
    assert pooled_scores([logits], "none", "mean") == [[1.0, 2.0]]


def test_max_pooling_keeps_each_labels_best_window() -> None:
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    per_window = scores(logits, "sigmoid")
    (top,) = pooled_scores([logits], "sigmoid", "max")
    assert top == [per_window[0][0], max(per_window[0][1], per_window[1][1]), per_window[1][2]]


def test_one_window_is_scored_as_without_windows() -> None:
    row = np.array([[0.3, -1.2]], dtype=np.float32)
    for pooling in ("mean", "max"):
        assert pooled_scores([row, row], "softmax", pooling) == scores(row, "softmax") * 2


def test_vectors_weigh_each_token_once() -> None:
    split = Split([window(126), window(126, 200), window(40, 400)], None, 0)
    weights = new_tokens(split, 16)
    assert weights.tolist() == [126, 110, 24]  # 126 + 110 + 24 = the text's 260 content tokens
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    (pooled,) = pool_windows([rows], [weights])
    assert pooled == pytest.approx([(126 + 24) / 260, (110 + 24) / 260])
    (alone,) = pool_windows([rows[:1]], [new_tokens(Split([window(5)], None, 0), 16)])
    assert alone.tolist() == rows[0].tolist()  # one window: its vector as it is


def test_a_text_without_content_tokens_gets_equal_weights() -> None:
    rows = np.array([[2.0, 0.0]], dtype=np.float32)
    (pooled,) = pool_windows([rows], [new_tokens(Split([window(0)], None, 0), 0)])
    assert pooled.tolist() == [2.0, 0.0]


def test_a_span_runs_from_the_first_content_token_to_the_last() -> None:
    assert span(window(3, start=10)) == (10, 15)  # tokens at 10, 12 and 14, one character each
    assert span(window(3, offsets=False)) == (None, None)
    assert span(window(0)) == (0, 0)


def test_the_window_cap_names_the_input_that_goes_over_it() -> None:
    splits = [Split([window(1)] * n, None, 0) for n in (2, 3, 1)]
    check_windows(Texts.of(["a", "b", "c"], "inputs"), splits, 6)
    with pytest.raises(InvalidInput) as refused:
        check_windows(Texts.of(["a", "b", "c"], "inputs"), splits, 4)
    assert refused.value.param == "inputs[1]" and "BERTSERVE_MAX_WINDOWS" in str(refused.value)
