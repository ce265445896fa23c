"""Wire models. Bounds that depend on settings (inputs per request, characters per input)
are checked in `serving/common.py`, since pydantic bounds are fixed at import time."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.errors import TABLE

# A text must hold at least one non-space character; the upper bounds (characters per text,
# texts per request) are settings, checked in the routes.
Text = Annotated[str, Field(min_length=1, pattern=r"\S")]
Texts = Annotated[list[Text], Field(min_length=1)]
# A text pair (premise and hypothesis, query and passage): exactly two texts.
Pair = Annotated[list[Text], Field(min_length=2, max_length=2)]
TextsOrPairs = Annotated[list[Text | Pair], Field(min_length=1)]


class StrictRequest(BaseModel):
    # Strict: 0 is not false and "5" is not 5; the schema says what is accepted, exactly.
    model_config = ConfigDict(extra="forbid", strict=True)


class Usage(BaseModel):
    input_tokens: int


class ClassifyRequest(StrictRequest):
    inputs: Text | TextsOrPairs = Field(
        description="one text, a list of texts, or a list of text pairs ([first, second]); "
        "pairs need a model exported for pairs"
    )
    model: str | None = Field(None, description="model name; optional when one classifier is served")
    top_k: int | None = Field(None, ge=1, description="keep the k best labels per input")
    function: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="score function; default softmax (single-label) or sigmoid (multi-label)"
    )
    truncate: bool = Field(True, description="cut inputs to the model's max length; false: 422 instead")


class LabelScore(BaseModel):
    label: str
    score: float


class ClassifyResponse(BaseModel):
    model: str
    predictions: list[list[LabelScore]]
    usage: Usage


class EmbedRequest(StrictRequest):
    inputs: Text | Texts = Field(description="one text or a list of texts")
    model: str | None = Field(None, description="model name; optional when one embedding model is served")
    normalize: bool = Field(True, description="L2-normalise each vector")
    dimensions: int | None = Field(None, ge=1, description="keep the first N components (re-normalised)")
    truncate: bool = Field(True, description="cut inputs to the model's max length; false: 422 instead")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32")


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]] | list[str]
    dimensions: int
    usage: Usage


class OpenAIEmbeddingRequest(StrictRequest):
    input: Text | Texts | list[int] | list[list[int]] = Field(
        description="text or list of texts (token-id inputs are refused)"
    )
    model: str = Field(description="model name as listed by GET /models")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(None, description="accepted and ignored")


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class TokensRequest(StrictRequest):
    inputs: Text | Texts = Field(description="one text or a list of texts")
    model: str | None = Field(None, description="model name; optional when one token classifier is served")
    aggregation: Literal["none", "simple", "first", "average", "max"] = Field(
        "simple", description="how tokens become entities, as transformers' token-classification pipeline"
    )
    ignore_labels: list[str] = Field(["O"], description="entity labels (raw tags with 'none') left out")
    truncate: bool = Field(True, description="tag the first window of a long input; false: 422 instead")
    stride: int | None = Field(None, ge=0, description="tag a long input whole, in windows overlapping by this")


class TaggedEntity(BaseModel):
    label: str
    score: float
    text: str
    start: int | None
    end: int | None


class TokensResponse(BaseModel):
    model: str
    entities: list[list[TaggedEntity]]
    covered: list[int | None] = Field(description="characters of each input that were tagged")
    usage: Usage


class TokenizeRequest(StrictRequest):
    inputs: Text | TextsOrPairs = Field(description="one text, a list of texts, or a list of text pairs")
    model: str | None = Field(None, description="whose tokenizer; default: the embedding model's")
    add_special_tokens: bool = Field(True, description="include [CLS], [SEP] and the like")
    truncate: bool = Field(True, description="cut to the model's max length, as the model routes do")


class TokenInfo(BaseModel):
    id: int
    text: str
    special: bool
    start: int = Field(description="character offset into the text it came from (Python str index)")
    stop: int


class ModelInfo(BaseModel):
    name: str
    task: Literal["classify", "embed", "rerank", "tokens"]
    pairs: bool = Field(description="takes text pairs ([first, second] inputs)")
    rerank: Literal["cross-encoder", "cosine"] | None = Field(
        description="serves /rerank: as a cross-encoder, or by the cosine of embeddings when no cross-encoder is served"
    )
    labels: list[str] | None
    dimension: int | None
    max_length: int
    variant: str
    provider: str
    queued: int
    instances: int = Field(description="onnxruntime sessions serving it side by side (BERTSERVE_INSTANCES)")
    intra_op_threads: int = Field(description="onnxruntime threads per session")
    fast_lane: bool = Field(description="a spinning session serves the batches that leave its queue empty")
    inline_max_tokens: int = Field(
        description="padded tokens (rows x longest row) up to which a fast-lane batch runs on the event loop's "
        "own thread (BERTSERVE_INLINE_MAX_MS); 0 = never"
    )
    max_batch_size: int = Field(description="items per batch, as set or as the provider's default")
    max_batch_tokens: int = Field(description="padded tokens per batch, as set or following the model")
    max_queue_items: int = Field(description="queued items beyond which a request gets 429")
    sha256: str = Field(description="checksum of the graph served, from its manifest (what a reload compares)")
    loaded_at: str = Field(description="when this graph was loaded, ISO 8601 UTC (start-up or a reload)")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ReloadResponse(BaseModel):
    added: list[str] = Field(description="models loaded from new directories")
    replaced: list[str] = Field(description="models whose graph checksum changed: the new graph now serves")
    removed: list[str] = Field(description="models whose directory is gone: no longer served")
    unchanged: list[str]


class StatusResponse(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    param: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# What a model route can answer besides 200 (400 and 405 are not the route's doing, and
# 499 is never sent: the client is gone).
MODEL_ROUTE_ERRORS = (401, 404, 408, 413, 422, 429, 500, 503, 504)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error responses, described from the error table in `service/errors.py`."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        text = "; ".join(cls.description for cls in TABLE if cls.status == status)
        out[status] = {"model": ErrorResponse, "description": text}
    return out


MODEL_ROUTE_RESPONSES = error_responses(*MODEL_ROUTE_ERRORS)
