import math

import numpy as np
import pytest

from service.tasks.classify.post import default_function, predictions, scores


def test_softmax_rows_sum_to_one_and_keep_order() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], dtype=np.float32)
    out = np.asarray(scores(logits, "softmax"))
    assert np.allclose(out.sum(axis=1), 1.0)
    assert out[0].argmax() == 2 and out[1].argmax() == 0
    assert np.isfinite(out).all()  # large logits do not overflow


def test_scores_match_numpy_in_float64() -> None:
    logits = np.random.default_rng(0).normal(0, 4, size=(16, 7)).astype(np.float32)
    wide = logits.astype(np.float64)
    shifted = np.exp(wide - wide.max(axis=1, keepdims=True))
    assert np.allclose(scores(logits, "softmax"), shifted / shifted.sum(axis=1, keepdims=True), rtol=1e-14, atol=0)
    assert np.allclose(scores(logits, "sigmoid"), 1 / (1 + np.exp(-wide)), rtol=1e-14, atol=0)


def test_sigmoid_and_none() -> None:
    logits = np.array([[0.0, 2.0, -1000.0, 1000.0]], dtype=np.float32)
    assert scores(logits, "sigmoid") == [[0.5, 1 / (1 + math.exp(-2)), 0.0, 1.0]]  # no overflow either way
    assert scores(logits, "none") == [[0.0, 2.0, -1000.0, 1000.0]]
    assert all(type(x) is float for x in scores(logits, "none")[0])  # JSON numbers, not numpy scalars


def test_predictions_sorted_and_cut() -> None:
    values = [[0.1, 0.7, 0.2]]
    out = predictions(values, ["a", "b", "c"], top_k=2)
    assert out == [[{"label": "b", "score": pytest.approx(0.7)}, {"label": "c", "score": pytest.approx(0.2)}]]
    assert len(predictions(values, ["a", "b", "c"], top_k=10)[0]) == 3


def test_ties_keep_label_order() -> None:
    out = predictions([[0.25, 0.5, 0.25, 0.5]], ["a", "b", "c", "d"], top_k=None)
    assert [p["label"] for p in out[0]] == ["b", "d", "a", "c"]


def test_default_function_follows_problem_type() -> None:
    assert default_function(False) == "softmax"
    assert default_function(True) == "sigmoid"
