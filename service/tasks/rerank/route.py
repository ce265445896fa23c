"""POST /rerank (text-embeddings-inference's wire format) and POST /v2/rerank (Cohere's): two
wire formats over one rerank path (handler.py). The model that ranked, and how (cross-encoder
or cosine), is in the X-Model header: both formats' bodies lack the field."""

from __future__ import annotations

import uuid

from service.state import AppState
from service.tasks.common import Call
from service.tasks.rerank.handler import Ranked, rerank
from service.tasks.rerank.schemas import CohereRerankRequest, CohereRerankResponse, RerankRequest, RerankResult
from service.tasks.spec import Reply, Route, Task


def _headers(ranked: Ranked) -> dict[str, str]:
    return {"X-Model": f"{ranked.model} ({ranked.mode})"}


async def rerank_route(body: RerankRequest, state: AppState, call: Call) -> Reply:
    """Rank `texts` against `query`, best first; every text unless `top_n` is given."""
    ranked = await rerank(state, call, body.query, body.texts, "texts", body.model, body.raw_scores, body.truncate)
    results = []
    for index in ranked.order(body.top_n):
        item: dict[str, object] = {"index": index, "score": float(ranked.scores[index])}
        if body.return_text:
            item["text"] = body.texts[index]
        results.append(item)
    return Reply(results, _headers(ranked))


async def cohere_rerank(body: CohereRerankRequest, state: AppState, call: Call) -> Reply:
    """Cohere's v2 rerank: the official client works unchanged. A `top_n` above the number of
    documents returns every document, as Cohere does."""
    ranked = await rerank(
        state, call, body.query, body.documents, "documents", body.model, False, True, body.max_tokens_per_doc
    )
    results = [{"index": i, "relevance_score": float(ranked.scores[i])} for i in ranked.order(body.top_n)]
    meta = {
        "api_version": {"version": "2"},
        "billed_units": {"search_units": 1},
        "tokens": {"input_tokens": ranked.tokens},
    }
    return Reply({"id": str(uuid.uuid4()), "results": results, "meta": meta}, _headers(ranked))


# Reranking works out of the box with an embedding model (cosine) until a cross-encoder is served.
TASK = Task(
    "rerank",
    ("rerank", "embed"),
    (
        Route("/rerank", RerankRequest, list[RerankResult], rerank_route),
        Route("/v2/rerank", CohereRerankRequest, CohereRerankResponse, cohere_rerank),
    ),
)
