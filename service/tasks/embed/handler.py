"""Embeddings: the common steps, then truncation to `dimensions` and normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.seam import ServedModel
from service.errors import InvalidInput
from service.state import AppState
from service.tasks.common import Call, Texts, coverage, process
from service.tasks.embed.post import finalize, to_base64


@dataclass(frozen=True)
class Embedded:
    model: str
    vectors: np.ndarray
    tokens: int
    truncated: list[bool]
    covered: list[int | list[int]]

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
) -> Embedded:
    def check(served: ServedModel) -> None:
        full = served.manifest.dimension or 0
        if dimensions is not None and dimensions > full:
            raise InvalidInput(f"dimensions {dimensions} is over the model's {full}", param="dimensions")

    out = await process(state, call, "embed", model, texts, truncate, check)
    return Embedded(out.model.name, finalize(out.rows, normalize, dimensions), out.tokens, *coverage(texts, out.cuts))
