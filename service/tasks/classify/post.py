"""Logits -> sorted label scores.

In plain Python floats, not numpy: a response holds a few rows of a few labels, and at low
load this runs right after the model, whose weights have just pushed everything else out of
the CPU caches, where numpy's per-call overhead dominates (docs/design.md, "Measured figures").
The arithmetic is the same, in float64; a test holds the results to numpy's within 1e-14.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Function = Literal["softmax", "sigmoid", "none"]
WindowPooling = Literal["mean", "max"]


def default_function(multi_label: bool) -> Function:
    return "sigmoid" if multi_label else "softmax"


def scores(logits: np.ndarray, function: Function) -> list[list[float]]:
    """One list of scores per row of logits (float64, whatever the model's dtype)."""
    rows: list[list[float]] = logits.tolist()
    if function == "softmax":
        return [_softmax(row) for row in rows]
    if function == "sigmoid":
        return [[_sigmoid(x) for x in row] for row in rows]
    return rows


def pooled_scores(windows: list[np.ndarray], function: Function, pooling: WindowPooling) -> list[list[float]]:
    """One list of scores per input from its windows' logits, a (windows, labels) array each:
    "mean" averages the logits (in float64), then applies the function; "max" applies it to
    each window, then keeps each label's highest score."""
    out = []
    for logits in windows:
        if len(logits) == 1:
            out += scores(logits, function)
        elif pooling == "mean":
            out += scores(logits.astype(np.float64).mean(axis=0, keepdims=True), function)
        else:
            out.append([max(column) for column in zip(*scores(logits, function), strict=True)])
    return out


def _softmax(row: list[float]) -> list[float]:
    top = max(row)  # shifted: large logits do not overflow
    exps = [math.exp(x - top) for x in row]
    total = sum(exps)
    return [e / total for e in exps]


def _sigmoid(x: float) -> float:
    # Written both ways so that exp never overflows (math.exp raises where numpy gave inf).
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def predictions(values: list[list[float]], labels: list[str], top_k: int | None) -> list[list[dict[str, object]]]:
    """One list per row, highest score first (ties in label order), cut to top_k."""
    out = []
    for row in values:
        order = sorted(range(len(row)), key=row.__getitem__, reverse=True)  # stable, reverse included
        out.append([{"label": labels[j], "score": row[j]} for j in order[:top_k]])
    return out
