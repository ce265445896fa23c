"""Embeddings: the common steps, then truncation to `dimensions` and normalisation. With a
stride, a long text is read in windows (service/tasks/windowed.py), whose vectors are pooled
before normalisation (post.py); with return_chunks each window's vector is given too, with the
characters it covers."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from service.engine.seam import ServedModel
from service.errors import InvalidInput
from service.state import AppState
from service.tasks.common import Call, Texts, admit, coverage, process
from service.tasks.embed.post import finalize, pool_windows, to_base64
from service.tasks.windowed import Windowed, check_stride, new_tokens, read_whole, span


@dataclass(frozen=True)
class Embedded:
    model: str
    vectors: np.ndarray
    tokens: int
    truncated: list[bool]
    covered: list[int | list[int]]
    windows: list[int]
    # With return_chunks: per input, its chunks' vectors (finalised as the input's) and spans.
    chunks: list[np.ndarray] | None = None
    spans: list[list[tuple[int | None, int | None]]] | None = None

    def encoded(self, encoding_format: str) -> list[str] | np.ndarray:
        return encode(self.vectors, encoding_format)

    def encoded_chunks(self, encoding_format: str) -> list[list[dict[str, object]]]:
        out = []
        for vectors, spans in zip(self.chunks or [], self.spans or [], strict=True):
            rows = encode(vectors, encoding_format)
            out.append([{"start": a, "end": b, "embedding": row} for (a, b), row in zip(spans, rows, strict=True)])
        return out


def encode(vectors: np.ndarray, encoding_format: str) -> list[str] | np.ndarray:
    return to_base64(vectors) if encoding_format == "base64" else vectors


async def embed(
    state: AppState,
    call: Call,
    texts: Texts,
    model: str | None,
    normalize: bool,
    dimensions: int | None,
    truncate: bool,
    stride: int | None = None,
    return_chunks: bool = False,
) -> Embedded:
    def check(served: ServedModel) -> None:
        full = served.manifest.dimension or 0
        if dimensions is not None and dimensions > full:
            raise InvalidInput(f"dimensions {dimensions} is over the model's {full}", param="dimensions")
        if stride is not None:
            check_stride(served, stride)

    if stride is None and not return_chunks:
        out = await process(state, call, "embed", model, texts, truncate, check)
        vectors = finalize(out.rows, normalize, dimensions)
        return Embedded(out.model.name, vectors, out.tokens, *coverage(texts, out.cuts), [1] * len(texts.items))
    admitted = admit(state, call, "embed", model, texts, check_model=check, whole=stride is not None)
    read = await read_whole(call, admitted, texts, stride, state.settings.max_windows, truncate)
    return _pooled(admitted.model, read, stride, normalize, dimensions, return_chunks)


def _pooled(
    served: ServedModel, read: Windowed, stride: int | None, normalize: bool, dimensions: int | None, chunks: bool
) -> Embedded:
    """Each text's windows pooled into its vector; with `chunks`, each window's vector too."""
    pooled = pool_windows(read.rows, [new_tokens(split, stride) for split in read.splits])
    truncated = [stride is None and split.tokens > served.manifest.max_length for split in read.splits]
    covered: list[int | list[int]] = [split.covered or 0 for split in read.splits]
    windows = [len(rows) for rows in read.rows]
    vectors = finalize(pooled, normalize, dimensions)
    whole = Embedded(served.name, vectors, read.tokens, truncated, covered, windows)
    if not chunks:
        return whole
    spans = [[span(w) for w in split.windows] for split in read.splits]
    return replace(whole, chunks=[finalize(rows, normalize, dimensions) for rows in read.rows], spans=spans)
