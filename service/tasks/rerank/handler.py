"""Reranking: score each text against one query, with a cross-encoder (one logit per pair)
or, when none is served, an embedding model (cosine of the query's and the text's vectors,
from the same batched embedding path). Either way the N texts are N items in the batcher,
sharing batches with other requests, and the query is tokenized once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.errors import InvalidInput
from service.state import AppState
from service.tasks.common import Call, Texts, admit, run, too_many_chars
from service.tasks.embed.post import finalize


@dataclass(frozen=True)
class Ranked:
    model: str
    mode: str  # "cross-encoder" or "cosine"
    scores: np.ndarray  # one per text, in the request's order
    tokens: int

    def order(self, top_n: int | None) -> list[int]:
        """Text indices, best first (ties keep the request's order), cut to top_n."""
        ranked = [int(i) for i in np.argsort(-self.scores, kind="stable")]
        return ranked[:top_n] if top_n is not None else ranked


async def rerank(
    state: AppState,
    call: Call,
    query: str,
    texts: list[str],
    param: str,
    model_name: str | None,
    raw_scores: bool,
    truncate: bool,
    max_text_tokens: int | None = None,
) -> Ranked:
    settings = state.settings
    if len(query) > settings.max_input_chars:
        raise InvalidInput(too_many_chars("query", len(query), settings.max_input_chars), param="query")
    docs = Texts(texts, param)
    admitted = admit(state, call, "rerank", model_name, docs, "max_rerank_texts")
    model = admitted.model
    if model.manifest.task == "rerank":
        pairs = Texts([(query, t) for t in texts], param, max_second_tokens=max_text_tokens)
        out = await run(call, admitted, pairs, truncate)
        logits = out.rows[:, 0].astype(np.float64)
        scores = logits if raw_scores else 1.0 / (1.0 + np.exp(-logits))
        return Ranked(model.name, "cross-encoder", scores, out.tokens)
    # An embedding model: the query rides as one more item of the same request.
    names = ["query", *(f"{param}[{i}]" for i in range(len(texts)))]
    items = Texts([query, *texts], param, names=names, max_second_tokens=max_text_tokens)
    out = await run(call, admitted, items, truncate)
    vectors = finalize(out.rows, normalize=True, dimensions=None).astype(np.float64)
    return Ranked(model.name, "cosine", vectors[1:] @ vectors[0], out.tokens)
