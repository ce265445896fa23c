"""Embeddings: the common steps, then truncation to `dimensions` and normalisation. With a
stride, a long text is read in windows (service/tasks/windowed.py), whose vectors are pooled
before normalisation (post.py); with return_chunks each window's vector is given too, with the
characters it covers; with chunk_tokens, chunks of about that many tokens, late-chunked
(late.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from service.engine.seam import ServedModel
from service.errors import InvalidInput
from service.state import AppState
from service.tasks.common import Call, Texts, admit, coverage, process
from service.tasks.embed.late import cut_chunks, late_vectors
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
    # With return_chunks: per input, its chunks' vectors (finalised as the input's), spans and
    # the window each was read in.
    chunks: list[np.ndarray] | None = None
    spans: list[list[tuple[int | None, int | None]]] | None = None
    chunk_windows: list[list[int]] | None = None

    def encoded(self, encoding_format: str) -> list[str] | np.ndarray:
        return encode(self.vectors, encoding_format)

    def encoded_chunks(self, encoding_format: str) -> list[list[dict[str, object]]]:
        out = []
        for vectors, spans, windows in zip(self.chunks or [], self.spans or [], self.chunk_windows or [], strict=True):
            rows = encode(vectors, encoding_format)
            out.append(
                [
                    {"start": a, "end": b, "window": k, "embedding": row}
                    for (a, b), k, row in zip(spans, windows, rows, strict=True)
                ]
            )
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
    chunk_tokens: int | None = None,
) -> Embedded:
    def check(served: ServedModel) -> None:
        full = served.manifest.dimension or 0
        if dimensions is not None and dimensions > full:
            raise InvalidInput(f"dimensions {dimensions} is over the model's {full}", param="dimensions")
        if stride is not None:
            check_stride(served, stride)
        if chunk_tokens is not None and served.manifest.token_output is None:
            raise InvalidInput(
                f"model {served.name} was exported without token states, which chunk_tokens needs: "
                "export it again with this version of bertserve",
                param="chunk_tokens",
            )

    return_chunks = return_chunks or chunk_tokens is not None

    if stride is None and not return_chunks:
        out = await process(state, call, "embed", model, texts, truncate, check)
        vectors = finalize(out.rows, normalize, dimensions)
        return Embedded(out.model.name, vectors, out.tokens, *coverage(texts, out.cuts), [1] * len(texts.items))
    admitted = admit(state, call, "embed", model, texts, check_model=check, whole=stride is not None)
    late = chunk_tokens is not None
    read = await read_whole(call, admitted, texts, stride, state.settings.max_windows, truncate, states=late)
    whole = _pooled(admitted.model, read, stride, normalize, dimensions, return_chunks and not late)
    if chunk_tokens is None:
        return whole
    assert read.states is not None
    cuts = [cut_chunks(split, stride, chunk_tokens) for split in read.splits]
    return replace(
        whole,
        chunks=[
            finalize(late_vectors(states, chunks), normalize, dimensions)
            for states, chunks in zip(read.states, cuts, strict=True)
        ],
        spans=[[(c.start, c.end) for c in chunks] for chunks in cuts],
        chunk_windows=[[c.window for c in chunks] for chunks in cuts],
    )


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
    return replace(
        whole,
        chunks=[finalize(rows, normalize, dimensions) for rows in read.rows],
        spans=spans,
        chunk_windows=[list(range(len(rows))) for rows in read.rows],
    )
