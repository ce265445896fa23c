"""Pooled vectors -> served embeddings (Matryoshka-style truncation, L2 normalisation)."""

from __future__ import annotations

import base64

import numpy as np


def finalize(vectors: np.ndarray, normalize: bool, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` components, then normalise (so a cut vector is unit length)."""
    out = vectors[:, :dimensions] if dimensions else vectors
    out = out.astype(np.float32, copy=True)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
    return out


def pool_windows(windows: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
    """One vector per input from its windows' pooled vectors, a (windows, dim) array each: their
    mean weighted by each window's tokens not shared with the window before it, so that every
    token of the text weighs once. (Equal weights where a text has no content tokens.)"""
    out = np.empty((len(windows), windows[0].shape[-1]), dtype=np.float32)
    for i, (rows, weight) in enumerate(zip(windows, weights, strict=True)):
        w = weight.astype(np.float64) if weight.sum() > 0 else np.ones(len(rows))
        out[i] = (w @ rows.astype(np.float64)) / w.sum()
    return out


def to_base64(vectors: np.ndarray) -> list[str]:
    """Little-endian float32 bytes per row, as the OpenAI API encodes them."""
    data = vectors.astype("<f4", copy=False)
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in data]
