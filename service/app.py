"""create_app(settings): the FastAPI application and its lifespan.

The lifespan does not wait for the models: it starts loading them in the background and
returns, so the port answers at once, /health/live with 200 and /health/ready (and every
model route) with 503 until the models are loaded and warmed up. Kubernetes probes and load
balancers then see "starting", not "connection refused".
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from service import __version__, collector, tracing
from service.api import errors, routes
from service.api.middleware import EnvelopedCORS, RequestMiddleware
from service.api.responses import JSONBytes
from service.api.routes_admin import router as admin_router
from service.api.routes_meta import DOCS_ASSETS
from service.api.routes_meta import router as meta_router
from service.engine.cache import ResultCache
from service.engine.client import EngineClient
from service.engine.model import LocalModel
from service.errors import ServiceError
from service.frontend import CatchUp, EngineFollower
from service.lifecycle import OnLoadError, one_line, release, start_up
from service.metrics import Metrics
from service.processes import FRONT_END_VARIABLE
from service.reload import reload
from service.runtime.cpus import available_cpus
from service.settings import Settings
from service.state import AppState, watch_stalls
from service.tasks import registry

log = logging.getLogger("bertserve")


def _on_sighup(loop: asyncio.AbstractEventLoop, state: AppState) -> bool:
    """SIGHUP reloads the model repository, as POST /admin/reload does (the outcome is
    logged). False where the loop cannot take signals (not the main thread, Windows)."""

    async def hangup() -> None:
        try:
            await reload(state)
        except ServiceError as exc:
            log.error("reload refused", extra={"reason": exc.message})

    def on_signal() -> None:
        task = loop.create_task(hangup(), name="sighup-reload")
        state.reload_tasks.add(task)
        task.add_done_callback(state.reload_tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_signal)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        return False
    return True


# Run before the models load, behind the bound port (`serve --model` exports checkpoints);
# gives what to call once they are served.
Prepare = Callable[[], Awaitable[Callable[[], None]]]


async def _load(state: AppState, prepare: Prepare | None, on_error: OnLoadError) -> None:
    done = None
    if prepare is not None:
        try:
            done = await prepare()
        except Exception as exc:  # any class: readiness and the exit say it in one line
            state.fail_loading(one_line(exc))
            on_error(one_line(exc))
            return
    await start_up(state, on_error)
    if done is not None:
        done()


def create_app(
    settings: Settings | None = None,
    on_load_error: OnLoadError | None = None,
    engine_dir: Path | None = None,
    prepare: Prepare | None = None,
) -> FastAPI:
    """Build the app; the lifespan loads the models in the background (service/lifecycle.py),
    after `prepare` when given. `on_load_error` hears of a model that cannot be loaded (the
    server exits with its one-line reason); without it, readiness stays 503 with the reason.
    With `engine_dir` (the engine's run folder), this is a front end: the models run in the
    engine process (service/frontend.py)."""
    settings = settings or Settings()
    state = AppState(settings, Metrics(), registry.serves(), api_keys=[k.encode() for k in settings.all_api_keys()])
    state.cache = ResultCache(settings.cache_bytes) if settings.cache_bytes else None
    state.metrics.ready.set(0)
    traces = tracing.from_environment()  # None unless OTEL_* ask for traces
    engine = EngineClient(engine_dir, state.metrics) if engine_dir is not None else None
    follower = None
    if engine is not None and engine_dir is not None:
        first = os.environ.get(FRONT_END_VARIABLE, "0") == "0"
        follower = EngineFollower(state, engine, engine_dir, announce=first)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ThreadPoolExecutor(max_workers=min(4, available_cpus()), thread_name_prefix="tokenize")
        state.tokenize_pool = pool
        loop = asyncio.get_running_loop()
        if follower is None:
            loading = loop.create_task(_load(state, prepare, on_load_error or (lambda _: None)), name="load")
        else:
            loading = loop.create_task(follower.follow(), name="engine")
            await follower.first_status()  # uvicorn takes connections once the lifespan has started
        watchdog = loop.create_task(watch_stalls(state), name="stall-watchdog")
        thresholds = gc.get_threshold()
        collecting = loop.create_task(collector.collect_when_quiet(state.quiet), name="full-collections")
        hangup = _on_sighup(loop, state)
        try:
            yield
        finally:
            if hangup:
                loop.remove_signal_handler(signal.SIGHUP)
            watchdog.cancel()
            collecting.cancel()
            gc.set_threshold(*thresholds)  # the process may go on (tests, an embedding app)
            loading.cancel()
            with suppress(asyncio.CancelledError):
                await loading
            state.start_draining()
            for task in list(state.reload_tasks):
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            for served in state.models.values():
                if isinstance(served, LocalModel):
                    await release(served)
            if engine is not None:
                engine.close()
            pool.shutdown(wait=False, cancel_futures=True)
            if traces is not None:
                await asyncio.to_thread(traces.shutdown)  # the spans still buffered go out

    app = FastAPI(
        title="bertserve",
        version=__version__,
        description="Classification and embeddings from fine-tuned BERT-family models on onnxruntime.",
        lifespan=lifespan,
        telemetry=tracing.fastapi_telemetry(traces),
        default_response_class=JSONBytes,
        docs_url=None,  # served by routes_meta from local assets, not a CDN
        redoc_url=None,
    )
    app.state.bertserve = state
    errors.install(app)
    routes.install(app)
    app.include_router(meta_router)
    app.include_router(admin_router)
    app.mount("/docs/assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    if settings.cors_origins:
        app.add_middleware(
            EnvelopedCORS,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id", "x-request-timeout", "x-priority"],
            expose_headers=["x-request-id", "retry-after"],
        )
    if follower is not None:  # inside the request middleware: the wait is part of the request's time
        app.add_middleware(CatchUp, follower=follower, state=state)
    # Added last, so outermost: every answer, a refused CORS preflight included, has its id.
    app.add_middleware(RequestMiddleware, state=state, tracing=traces)
    return app
