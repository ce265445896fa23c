"""Wire models of the rerank routes: text-embeddings-inference's /rerank and Cohere's
/v2/rerank, so their clients work unchanged."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from service.priorities import BATCH, INTERACTIVE, Priority
from service.tasks.wire import Prioritised, StrictRequest, Text

Documents = Annotated[list[Text], Field(min_length=1)]


class RerankRequest(Prioritised):
    query: Text
    texts: Documents = Field(description="the candidates to rank against the query")
    model: str | None = Field(
        None,
        description="a cross-encoder, or an embedding model (cosine); "
        "default: the served cross-encoder, else the embedding model",
    )
    raw_scores: bool = Field(False, description="cross-encoders: the raw logit instead of its sigmoid")
    return_text: bool = Field(False, description="echo each text in its result")
    truncate: bool = Field(True, description="cut pairs to the model's max length (second text first); false: 422")
    top_n: int | None = Field(None, ge=1, description="keep the n best; default every text")


class RerankResult(BaseModel):
    index: int
    score: float
    text: str | None = None


class CohereRerankRequest(StrictRequest):
    model: str = Field(description="model name as listed by GET /models")
    query: Text
    documents: Documents
    top_n: int | None = Field(None, ge=1, description="keep the n best; above the count, every document")
    max_tokens_per_doc: int | None = Field(None, ge=1, description="cut each document to this many tokens")
    # Cohere's meaning (its client's own types): lower is more urgent, 0 (its default) the
    # most. 0 is served as interactive, anything above as batch.
    priority: int | None = Field(
        None,
        ge=0,
        description="Cohere's: lower is more urgent; 0 (the default) is served as interactive, 1 and above as batch",
    )

    def level(self) -> Priority | None:
        if self.priority is None:
            return None
        return INTERACTIVE if self.priority == 0 else BATCH


class CohereResult(BaseModel):
    index: int
    relevance_score: float


class CohereApiVersion(BaseModel):
    version: str


class CohereBilledUnits(BaseModel):
    search_units: int


class CohereTokens(BaseModel):
    input_tokens: int


class CohereMeta(BaseModel):
    api_version: CohereApiVersion
    billed_units: CohereBilledUnits
    tokens: CohereTokens


class CohereRerankResponse(BaseModel):
    id: str
    results: list[CohereResult]
    meta: CohereMeta
