"""POST /rerank (text-embeddings-inference's wire format) and POST /v2/rerank (Cohere's):
two wire formats over one rerank path (serving/rerank.py). The model that ranked, and how
(cross-encoder or cosine), is in the X-Model header: both formats' bodies lack the field."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import Authorized, CallOf, State
from service.api.rerank_schemas import CohereRerankRequest, CohereRerankResponse, RerankRequest, RerankResult
from service.api.responses import JSONBytes
from service.api.schemas import MODEL_ROUTE_RESPONSES
from service.serving.rerank import Ranked
from service.serving.rerank import rerank as rerank_texts

router = APIRouter()


def _headers(ranked: Ranked) -> dict[str, str]:
    return {"X-Model": f"{ranked.model} ({ranked.mode})"}


@router.post("/rerank", response_model=list[RerankResult], responses=MODEL_ROUTE_RESPONSES, response_class=JSONBytes)
async def rerank(body: RerankRequest, state: State, call: CallOf, _: Authorized) -> Response:
    """Rank `texts` against `query`, best first; every text unless `top_n` is given."""
    ranked = await rerank_texts(
        state, call, body.query, body.texts, "texts", body.model, body.raw_scores, body.truncate
    )
    results = []
    for index in ranked.order(body.top_n):
        item: dict[str, object] = {"index": index, "score": float(ranked.scores[index])}
        if body.return_text:
            item["text"] = body.texts[index]
        results.append(item)
    return JSONBytes(results, headers=_headers(ranked))


@router.post(
    "/v2/rerank", response_model=CohereRerankResponse, responses=MODEL_ROUTE_RESPONSES, response_class=JSONBytes
)
async def cohere_rerank(body: CohereRerankRequest, state: State, call: CallOf, _: Authorized) -> Response:
    """Cohere's v2 rerank: the official client works unchanged. A `top_n` above the number of
    documents returns every document, as Cohere does."""
    ranked = await rerank_texts(
        state, call, body.query, body.documents, "documents", body.model, False, True, body.max_tokens_per_doc
    )
    results = [{"index": i, "relevance_score": float(ranked.scores[i])} for i in ranked.order(body.top_n)]
    meta = {
        "api_version": {"version": "2"},
        "billed_units": {"search_units": 1},
        "tokens": {"input_tokens": ranked.tokens},
    }
    return JSONBytes({"id": str(uuid.uuid4()), "results": results, "meta": meta}, headers=_headers(ranked))
