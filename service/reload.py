"""Live model updates: `POST /admin/reload` and SIGHUP rescan the model repository.

A model is new when its name is not served, changed when the checksum of the graph it would
serve differs from the served one's (its manifest's sha256), removed when its directory is
gone. A model whose manifest lists the same graph is still checked as a start-up would check
it (lifecycle.unchanged): a file changed in place under an unchanged manifest is refused, or,
without verification, the model is built again. New and changed models go through the
lifecycle a start-up uses (service/lifecycle.py), beside the ones serving, on worker threads,
while requests go on; then every change is swapped in by one assignment of `state.models`,
between two requests. A replaced or removed model keeps its queue: requests admitted on it
finish on it, and it is released once the last one is answered.

A reload is all or nothing: if one directory does not load, verify or warm up, or the default
models cannot be chosen (service/defaults.py), nothing of it is applied and the refusal (422,
`model_rejected`) says why; the models served are untouched. Running it again after fixing the
directory applies everything. A folder without a manifest is skipped with a warning, as at
start-up.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field

from service.engine import heap
from service.engine.model import LocalModel
from service.errors import ModelRejected, Unavailable
from service.kinds import ModelKind
from service.lifecycle import LoadFailed, bring_up_all, one_line, read_repository, release, unchanged
from service.runtime.loader import Found
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
    if state.forward_reload is not None:  # a front end: the engine process holds the models
        return Changes(**await state.forward_reload())
    async with state.reloading:
        if state.tokenize_pool is None or state.unready_reason() is not None:
            raise Unavailable(f"no reload now: {state.unready_reason() or 'the service is starting'}")
        started = time.perf_counter()
        try:
            repository = await asyncio.to_thread(read_repository, state.settings)
        except Exception as exc:  # any class: a refusal that says why, not a 500
            raise ModelRejected(
                f"the model repository was not reloaded: {_within_repository(one_line(exc), state)}"
            ) from exc
        found = repository.found
        # The models of this process: a front end's reload went to the engine process above.
        served = {name: m for name, m in state.models.items() if isinstance(m, LocalModel)}
        changes = Changes(removed=sorted(set(served) - {f.name for f in found}))
        wanted: list[Found] = []
        try:
            for entry in found:
                old = served.get(entry.name)
                if old is not None and old.identity == entry.identity and await unchanged(state, entry, old):
                    changes.unchanged.append(entry.name)
                    continue
                wanted.append(entry)
                (changes.replaced if old is not None else changes.added).append(entry.name)
            fresh = await bring_up_all(state, wanted)  # beside those serving; released again on a failure
        except LoadFailed as exc:
            raise ModelRejected(_within_repository(str(exc), state), param=exc.model) from exc
        _swap(state, served, fresh, changes.removed, repository.defaults)
        log.info(
            "models reloaded",
            extra={**changes.__dict__, "duration_ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return changes


def _swap(
    state: AppState,
    served: dict[str, LocalModel],
    fresh: list[LocalModel],
    removed: list[str],
    defaults: dict[ModelKind, str],
) -> None:
    """Every change in one step: no await between the first and the last. The defaults are
    chosen anew from the manifests on disk: a `"default"` changed in a manifest whose graph is
    unchanged takes effect too."""
    models = {name: model for name, model in served.items() if name not in removed}
    models.update({model.name: model for model in fresh})
    state.serve(models, defaults)
    for old in [served[name] for name in removed] + [served[m.name] for m in fresh if m.name in served]:
        state.metrics.model_info.remove(*old.info_labels)
        if state.cache is not None:
            state.cache.drop(old.identity)
        task = asyncio.get_running_loop().create_task(_retire(state, old), name=f"retire-{old.name}")
        state.reload_tasks.add(task)
        task.add_done_callback(state.reload_tasks.discard)
    for model in fresh:
        state.metrics.model_info.labels(*model.info_labels).set(1)


async def _retire(state: AppState, model: LocalModel) -> None:
    """Free a model replaced or removed by a reload once no request holds it: every request
    admitted on it has been answered (or has passed its deadline) and its queue is empty."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + state.settings.request_timeout_s + 5  # past every admitted request's deadline
    try:
        # The engine process: a front end that admitted a request on the old model before it
        # heard of the swap still finds it (service/engine_process.py).
        await asyncio.sleep(state.retire_after_s)
        while model.users or not model.idle():
            if loop.time() > give_up:
                log.warning("freeing a replaced model still in use", extra={"model": model.name, "users": model.users})
                break
            await asyncio.sleep(RETIRE_POLL_S)
    finally:  # at shutdown too
        await release(model)
        if state.cache is not None:  # rows its last requests put there since the swap
            state.cache.drop(model.identity)
    # The models loaded at start-up were moved out of the collector's view (gc.freeze in
    # app.py); what a replaced model leaves in cycles would stay for good. Collect once,
    # then freeze what is left.
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    # Off the loop: trimming walks every malloc arena.
    await asyncio.to_thread(heap.trim)
    log.info("replaced model freed", extra={"model": model.name, "identity": model.identity})


def _within_repository(reason: str, state: AppState) -> str:
    """Paths in a refusal relative to the model repository: where it lives on the host is
    nobody's business but the host's."""
    return reason.replace(f"{state.settings.models.resolve()}/", "").replace(f"{state.settings.models}/", "")
