"""Health, model listing (ours and OpenAI's), metrics, and the docs (served from local assets)."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from service import __version__, building
from service.api.deps import Authorized, MetricsAuthorized, State
from service.api.errors import respond
from service.api.responses import JSONBytes
from service.api.schemas import ModelsResponse, OpenAIModelList, ReadyResponse, StatusResponse, error_responses
from service.errors import Unavailable
from service.request_context import context_of
from service.state import AppState

router = APIRouter()

# Swagger UI's script and stylesheet, from a PyPI package: /docs works on an air-gapped network.
DOCS_ASSETS = Path(next(iter(fastapi_offline.__path__))) / "static"


@router.get("/", include_in_schema=False)
async def index() -> Response:
    """Where to look next, rather than a bare 404."""
    return JSONBytes({"name": "bertserve", "version": __version__, "docs": "/docs", "openapi": "/openapi.json"})


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="bertserve",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon.png",
    )


@router.get("/health/live", response_model=StatusResponse, responses=error_responses(503))
async def live(request: Request, state: State) -> Response:
    """The process is up and its event loop answers; 503 once a model's runs have kept failing
    for BERTSERVE_SICK_GRACE_S (a device error, or every run failing), so an orchestrator
    restarts it."""
    if dead := state.dead_reason(time.monotonic()):
        return respond(Unavailable(dead), context_of(request.scope).request_id)
    return JSONBytes({"status": "ok"})


@router.get("/health/ready", response_model=ReadyResponse, responses=error_responses(503))
async def ready(request: Request, state: State) -> Response:
    """200 once every model is loaded and warmed up; 503 before that, while draining and while
    the runtime is stalled (the same decision that admits requests). Models the default build
    has yet to add do not hold readiness back: they are listed under `building`."""
    if unready := _unready(request, state):
        return unready
    pending = building.read(state.settings.models)
    return JSONBytes({"status": "ready", "building": pending} if pending else {"status": "ready"})


@router.get(
    "/health",
    response_class=Response,
    responses={200: {"description": "ready: an empty body"}, **error_responses(503)},
)
async def health(request: Request, state: State) -> Response:
    """text-embeddings-inference's health check: 200 with an empty body when ready, 503 when
    not (the same decision as /health/ready)."""
    return _unready(request, state) or Response(status_code=200)


def _unready(request: Request, state: AppState) -> Response | None:
    """The 503 of a service that does not take requests now, or None when it does."""
    reason = state.unready_reason()
    return respond(Unavailable(reason), context_of(request.scope).request_id) if reason else None


@router.get("/models", response_model=ModelsResponse, responses=error_responses(401), response_class=JSONBytes)
async def models(state: State, _: Authorized) -> Response:
    """The loaded models, the variant and execution provider each runs on."""
    out = []
    for served in state.models.values():
        m = served.manifest
        out.append(
            {
                "name": m.name,
                "task": m.task,
                "default": state.is_default(served),
                "pairs": m.pairs,
                "rerank": state.rerank_mode(served),
                "labels": m.labels,
                "dimension": m.dimension,
                "max_length": m.max_length,
                "queued": served.queued,
                **served.describe(),
                **asdict(served.limits()),
                "loaded_at": datetime.fromtimestamp(served.loaded_at, UTC).isoformat(timespec="milliseconds"),
            }
        )
    pending = building.read(state.settings.models)
    return JSONBytes({"models": out, "building": pending} if pending else {"models": out})


@router.get("/v1/models", response_model=OpenAIModelList, responses=error_responses(401), response_class=JSONBytes)
async def openai_models(state: State, _: Authorized) -> Response:
    """The loaded models in OpenAI's list shape, for its clients' `models.list()`; /models
    says more of each."""
    data = [
        {"id": served.name, "object": "model", "created": int(served.loaded_at), "owned_by": "bertserve"}
        for served in state.models.values()
    ]
    return JSONBytes({"object": "list", "data": data})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **error_responses(401)},
)
async def metrics(state: State, _: MetricsAuthorized) -> Response:
    """Prometheus exposition."""
    if state.gather_metrics is not None:  # a front end: the whole service's, every process merged
        return Response(await state.gather_metrics(), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
