"""Wire models of the routes that are not tasks (models, reload, health) and of the error
envelope; each task's own are in its folder (service/tasks/<name>/schemas.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from service.http_errors import TABLE
from service.kinds import ModelKind


class VariantChoiceInfo(BaseModel):
    int8_ms: float | None = Field(description="int8's time on the probe batches at load (auto on the CPU), else null")
    fp32_ms: float | None = Field(description="fp32's time on the same batches, else null")
    reason: str


class ModelInfo(BaseModel):
    name: str
    task: ModelKind
    default: bool = Field(
        description="answers the requests of its task that name no model (BERTSERVE_DEFAULT_MODELS, the manifest's "
        "`default`, or the only model of its task)"
    )
    pairs: bool = Field(description="takes text pairs ([first, second] inputs)")
    rerank: Literal["cross-encoder", "cosine"] | None = Field(
        description="serves /rerank: as a cross-encoder, or by the cosine of embeddings when no cross-encoder is served"
    )
    labels: list[str] | None
    dimension: int | None
    max_length: int
    variant: str
    variant_choice: VariantChoiceInfo | None = Field(
        description="why this variant serves: BERTSERVE_VARIANT, or under auto on the CPU the timings of int8 and fp32"
    )
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


class Building(BaseModel):
    task: str
    state: str = Field(description="queued, building, or failed: <reason>")
    stage: str | None = Field(
        None, description="what a `serve --model` export is doing: load, export, verify fp32, quantize int8, ..."
    )


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    building: dict[str, Building] | None = Field(
        None, description="default models the build (make run) has yet to add; absent when none"
    )


class OpenAIModel(BaseModel):
    id: str = Field(description="the model's name, as the model routes take it")
    object: Literal["model"] = "model"
    created: int = Field(description="when the graph served was loaded, Unix seconds")
    owned_by: str


class OpenAIModelList(BaseModel):
    """OpenAI's GET /v1/models: what its clients' `models.list()` reads."""

    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class ReloadResponse(BaseModel):
    added: list[str] = Field(description="models loaded from new directories")
    replaced: list[str] = Field(description="models whose graph checksum changed: the new graph now serves")
    removed: list[str] = Field(description="models whose directory is gone: no longer served")
    unchanged: list[str]


class StatusResponse(BaseModel):
    status: str


class ReadyResponse(StatusResponse):
    building: dict[str, Building] | None = Field(
        None, description="default models the build (make run) has yet to add; absent when none"
    )


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
    """OpenAPI error responses, described from the error table in `service/http_errors.py`."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        text = "; ".join(wire.description for wire in TABLE.values() if wire.status == status)
        out[status] = {"model": ErrorResponse, "description": text}
    return out


MODEL_ROUTE_RESPONSES = error_responses(*MODEL_ROUTE_ERRORS)
