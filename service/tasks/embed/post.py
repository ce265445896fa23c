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


def to_base64(vectors: np.ndarray) -> list[str]:
    """Little-endian float32 bytes per row, as the OpenAI API encodes them."""
    data = vectors.astype("<f4", copy=False)
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in data]
