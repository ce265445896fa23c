"""Health, model listing and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, Response

from service.api.deps import Authorized, MetricsAuthorized, State
from service.api.responses import JSONBytes, error_body
from service.api.schemas import ERRORS, ModelsResponse, StatusResponse

router = APIRouter()


@router.get("/health/live", response_model=StatusResponse)
async def live() -> Response:
    """The process is up and its event loop answers."""
    return JSONBytes({"status": "ok"})


@router.get("/health/ready", response_model=StatusResponse, responses={503: ERRORS[503]})
async def ready(state: State) -> Response:
    """200 once every model is loaded and warmed up; 503 before that and while draining."""
    reason = state.unready_reason()
    if reason:
        return JSONBytes(error_body("unavailable", reason), status_code=503)
    return JSONBytes({"status": "ready"})


@router.get("/models", response_model=ModelsResponse, responses={401: ERRORS[401]}, response_class=JSONBytes)
async def models(state: State, _: Authorized) -> Response:
    """The loaded models, the variant and execution provider each runs on."""
    out = []
    for pipeline in state.pipelines.values():
        m = pipeline.manifest
        out.append(
            {
                "name": m.name,
                "task": m.task,
                "labels": m.labels,
                "dimension": m.dimension,
                "max_length": m.max_length,
                "variant": pipeline.model.variant,
                "provider": pipeline.model.session.provider,
                "queued": pipeline.batcher.queued,
            }
        )
    return JSONBytes({"models": out})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, 401: ERRORS[401]},
)
async def metrics(state: State, _: MetricsAuthorized) -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
