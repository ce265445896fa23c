"""Embeddings: the common steps, then truncation to `dimensions` and normalisation. With a
stride, a long text is read in windows (service/tasks/windowed.py), whose vectors are pooled
before normalisation (post.py); with return_chunks each window's vector is given too, with the
characters it covers."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from service.engine.model import ServedModel
from service.errors import InvalidInput
from service.state import AppState
from service.tasks.common import Call, Texts, admit, coverage, process
from service.tasks.embed.post import finalize, pool_windows, to_base64
from service.tasks.windowed import check_stride, new_tokens, read_whole, span


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
    pooled = pool_windows(read.rows, [new_tokens(split, stride) for split in read.splits])
    max_length = admitted.model.manifest.max_length
    truncated = [stride is None and split.tokens > max_length for split in read.splits]
    covered: list[int | list[int]] = [split.covered or 0 for split in read.splits]
    whole = Embedded(
        admitted.model.name,
        finalize(pooled, normalize, dimensions),
        read.tokens,
        truncated,
        covered,
        [len(r) for r in read.rows],
    )
    if not return_chunks:
        return whole
    chunks = [finalize(rows, normalize, dimensions) for rows in read.rows]
    spans = [[span(w) for w in split.windows] for split in read.splits]
    return replace(whole, chunks=chunks, spans=spans)
