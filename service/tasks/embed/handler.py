"""Embeddings: the common steps, then truncation to `dimensions` and normalisation. With a
stride, a long text is read in windows (service/tasks/windowed.py), whose vectors are pooled
before normalisation (post.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.model import ServedModel
from service.errors import InvalidInput
from service.state import AppState
from service.tasks.common import Call, Texts, admit, coverage, process
from service.tasks.embed.post import finalize, pool_windows, to_base64
from service.tasks.windowed import check_stride, new_tokens, read_whole


@dataclass(frozen=True)
class Embedded:
    model: str
    vectors: np.ndarray
    tokens: int
    truncated: list[bool]
    covered: list[int | list[int]]
    windows: list[int]

    def encoded(self, encoding_format: str) -> list[str] | np.ndarray:
        return to_base64(self.vectors) if encoding_format == "base64" else self.vectors


async def embed(
    state: AppState,
    call: Call,
    texts: Texts,
    model: str | None,
    normalize: bool,
    dimensions: int | None,
    truncate: bool,
    stride: int | None = None,
) -> Embedded:
    def check(served: ServedModel) -> None:
        full = served.manifest.dimension or 0
        if dimensions is not None and dimensions > full:
            raise InvalidInput(f"dimensions {dimensions} is over the model's {full}", param="dimensions")
        if stride is not None:
            check_stride(served, stride)

    if stride is None:
        out = await process(state, call, "embed", model, texts, truncate, check)
        vectors = finalize(out.rows, normalize, dimensions)
        return Embedded(out.model.name, vectors, out.tokens, *coverage(texts, out.cuts), [1] * len(texts.items))
    admitted = admit(state, call, "embed", model, texts, check_model=check, whole=True)
    read = await read_whole(call, admitted, texts, stride, state.settings.max_windows)
    pooled = pool_windows(read.rows, [new_tokens(split, stride) for split in read.splits])
    n = len(texts.items)
    covered: list[int | list[int]] = [len(t) for t in texts.items]
    windows = [len(r) for r in read.rows]
    return Embedded(
        admitted.model.name, finalize(pooled, normalize, dimensions), read.tokens, [False] * n, covered, windows
    )
