import numpy as np
import pytest

from service.tasks.classify import default_function, predictions, scores


def test_softmax_rows_sum_to_one_and_keep_order() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], dtype=np.float32)
    out = scores(logits, "softmax")
    assert np.allclose(out.sum(axis=1), 1.0)
    assert out[0].argmax() == 2 and out[1].argmax() == 0
    assert np.isfinite(out).all()  # large logits do not overflow


def test_sigmoid_and_none() -> None:
    logits = np.array([[0.0, 2.0]], dtype=np.float32)
    assert np.allclose(scores(logits, "sigmoid"), [[0.5, 1 / (1 + np.exp(-2))]])
    assert np.allclose(scores(logits, "none"), logits)


def test_predictions_sorted_and_cut() -> None:
    values = np.array([[0.1, 0.7, 0.2]])
    out = predictions(values, ["a", "b", "c"], top_k=2)
    assert out == [[{"label": "b", "score": pytest.approx(0.7)}, {"label": "c", "score": pytest.approx(0.2)}]]
    assert len(predictions(values, ["a", "b", "c"], top_k=10)[0]) == 3


def test_default_function_follows_problem_type() -> None:
    assert default_function(False) == "softmax"
    assert default_function(True) == "sigmoid"
