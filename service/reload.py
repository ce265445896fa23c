"""Live model updates: `POST /admin/reload` and SIGHUP rescan the model repository.

A model is new when its name is not served, changed when the checksum of the graph it would
serve differs from the served one's (its manifest's sha256), removed when its directory is
gone. New and changed models are loaded, checked and warmed up beside the ones serving, on
worker threads, while requests go on; then every change is swapped in by one assignment of
`state.models`, between two requests. A replaced or removed model keeps its queue: requests
admitted on it finish on it, and it is freed once the last one is answered.

A reload is all or nothing: if one directory does not load, verify or warm up, nothing of it
is applied and the refusal (422, `model_rejected`) names that model; the models served are
untouched. Running it again after fixing the directory applies everything.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field

from service.engine.model import ServedModel
from service.errors import ModelRejected, Unavailable
from service.runtime.loader import Found, LoadedModel, ModelLoadError, load_model_dir, scan
from service.runtime.session import InferenceError
from service.state import AppState

log = logging.getLogger("bertserve")
# How often a replaced model is checked for requests still on it.
RETIRE_POLL_S = 0.05


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


async def reload(state: AppState) -> Changes:
    """Rescan the repository and apply what changed; ModelRejected (nothing applied) when a
    model directory does not load, Unavailable when the service is not serving."""
    async with state.reloading:
        if state.tokenize_pool is None or state.unready_reason() is not None:
            raise Unavailable(f"no reload now: {state.unready_reason() or 'the service is starting'}")
        started = time.perf_counter()
        try:
            found = await asyncio.to_thread(scan, state.settings)
        except ModelLoadError as exc:
            raise ModelRejected(
                f"the model repository was not reloaded: {_within_repository(str(exc), state)}"
            ) from exc
        served = dict(state.models)
        changes = Changes(removed=sorted(set(served) - {f.name for f in found}))
        fresh: list[ServedModel] = []
        try:
            for entry in found:
                old = served.get(entry.name)
                if old is not None and old.identity == entry.identity:
                    changes.unchanged.append(entry.name)
                    continue
                fresh.append(await _prepare(state, entry))
                (changes.replaced if old is not None else changes.added).append(entry.name)
        except BaseException:
            for model in fresh:  # loaded beside, never served
                await model.stop()
                model.model.close()
            raise
        _swap(state, served, fresh, changes.removed)
        log.info(
            "models reloaded",
            extra={**changes.__dict__, "duration_ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return changes


async def _prepare(state: AppState, entry: Found) -> ServedModel:
    """Load, verify and warm up one model beside those serving; its batcher started, not yet
    reachable by any request."""
    assert state.tokenize_pool is not None
    try:
        loaded: LoadedModel = await asyncio.to_thread(load_model_dir, entry.directory, state.settings)
    except ModelLoadError as exc:
        reason = _within_repository(str(exc), state)
        raise ModelRejected(f"model {entry.name!r} was not loaded: {reason}", param=entry.name) from exc
    model = ServedModel(
        loaded, state.settings, state.metrics, state.tokenize_pool, state.cache, quiet=state.quiet, alone=state.alone
    )
    try:
        if state.settings.warmup:
            await asyncio.to_thread(model.warm_up)
    except InferenceError as exc:
        loaded.close()
        raise ModelRejected(f"model {entry.name!r} failed its warm-up: {exc}", param=entry.name) from exc
    await model.start()
    return model


def _swap(state: AppState, served: dict[str, ServedModel], fresh: list[ServedModel], removed: list[str]) -> None:
    """Every change in one step: no await between the first and the last."""
    models = {name: model for name, model in served.items() if name not in removed}
    models.update({model.name: model for model in fresh})
    state.models = models
    for old in [served[name] for name in removed] + [served[m.name] for m in fresh if m.name in served]:
        state.metrics.model_info.remove(*old.info_labels)
        if state.cache is not None:
            state.cache.drop(old.identity)
        task = asyncio.get_running_loop().create_task(_retire(state, old), name=f"retire-{old.name}")
        state.reload_tasks.add(task)
        task.add_done_callback(state.reload_tasks.discard)
    for model in fresh:
        state.metrics.model_info.labels(*model.info_labels).set(1)


async def _retire(state: AppState, model: ServedModel) -> None:
    """Free a model replaced or removed by a reload once no request holds it: every request
    admitted on it has been answered (or has passed its deadline) and its queue is empty."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + state.settings.request_timeout_s + 5  # past every admitted request's deadline
    try:
        while model.users or model.batcher.queued or model.batcher.busy_since is not None:
            if loop.time() > give_up:
                log.warning("freeing a replaced model still in use", extra={"model": model.name, "users": model.users})
                break
            await asyncio.sleep(RETIRE_POLL_S)
    finally:  # at shutdown too
        await model.stop()
        model.model.close()
        if state.cache is not None:  # rows its last requests put there since the swap
            state.cache.drop(model.identity)
    # The models loaded at start-up were moved out of the collector's view (gc.freeze in
    # app.py); what a replaced model leaves in cycles would stay for good. Collect once,
    # then freeze what is left.
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.info("replaced model freed", extra={"model": model.name, "identity": model.identity})


def _within_repository(reason: str, state: AppState) -> str:
    """Paths in a refusal relative to the model repository: where it lives on the host is
    nobody's business but the host's."""
    return reason.replace(f"{state.settings.models.resolve()}/", "").replace(f"{state.settings.models}/", "")
