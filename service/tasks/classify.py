"""Logits -> sorted label scores."""

from __future__ import annotations

from typing import Literal

import numpy as np

Function = Literal["softmax", "sigmoid", "none"]


def default_function(multi_label: bool) -> Function:
    return "sigmoid" if multi_label else "softmax"


def scores(logits: np.ndarray, function: Function) -> np.ndarray:
    logits = logits.astype(np.float64)
    if function == "softmax":
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))
    if function == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-logits)))
    return logits


def predictions(values: np.ndarray, labels: list[str], top_k: int | None) -> list[list[dict[str, object]]]:
    """One list per row, highest score first, cut to top_k."""
    order = np.argsort(-values, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, :top_k]
    return [[{"label": labels[j], "score": float(row[j])} for j in idx] for row, idx in zip(values, order, strict=True)]
