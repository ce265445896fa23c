"""create_app(settings): the FastAPI application, its lifespan (load, warm up, serve, stop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service import __version__
from service.api import errors
from service.api.middleware import RequestContext
from service.api.responses import JSONBytes
from service.api.routes_classify import router as classify_router
from service.api.routes_embed import router as embed_router
from service.api.routes_meta import router as meta_router
from service.api.state import AppState, watch_stalls
from service.metrics import Metrics
from service.pipeline import ModelPipeline
from service.runtime.cpus import available_cpus
from service.runtime.loader import LoadedModel, load_all
from service.settings import Settings

log = logging.getLogger("bertserve")


def create_app(settings: Settings | None = None, models: list[LoadedModel] | None = None) -> FastAPI:
    """Build the app. `models` may be loaded beforehand (the CLI does, to fail fast with a
    one-line error); otherwise they are loaded in the lifespan."""
    settings = settings or Settings()
    state = AppState(settings, Metrics(), api_keys=[k.encode() for k in settings.all_api_keys()])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = models if models is not None else await asyncio.to_thread(load_all, settings)
        tokenize_pool = ThreadPoolExecutor(max_workers=min(4, available_cpus()), thread_name_prefix="tokenize")
        for model in loaded:
            state.pipelines[model.name] = ModelPipeline(model, settings, state.metrics, tokenize_pool)
            state.metrics.model_info.labels(model.name, model.manifest.task, model.variant, model.session.provider).set(
                1
            )
        if settings.warmup:
            for pipeline in state.pipelines.values():
                await asyncio.to_thread(pipeline.warm_up)
        for pipeline in state.pipelines.values():
            await pipeline.start()
        state.set_ready(True)
        log.info("ready", extra={"models": sorted(state.pipelines)})
        watchdog = asyncio.get_running_loop().create_task(watch_stalls(state), name="stall-watchdog")
        try:
            yield
        finally:
            watchdog.cancel()
            state.start_draining()
            for pipeline in state.pipelines.values():
                await pipeline.stop()
            tokenize_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="bertserve",
        version=__version__,
        description="Classification and embeddings from fine-tuned BERT-family models on onnxruntime.",
        lifespan=lifespan,
        default_response_class=JSONBytes,
    )
    app.state.bertserve = state
    errors.install(app)
    for router in (classify_router, embed_router, meta_router):
        app.include_router(router)
    app.add_middleware(RequestContext, state=state)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id", "x-request-timeout"],
            expose_headers=["x-request-id", "retry-after"],
        )
    return app
