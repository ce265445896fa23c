"""One model's life in the service, the same at start-up and on a reload.

- read the repository (`read_repository`): which folders are model directories (a folder
  without a manifest is skipped with a warning), their manifests, and the default model of
  each task (service/defaults.py), before anything loads;
- build and verify: `load_model_dir` reads the manifest, hashes each file once against it
  (with BERTSERVE_VERIFY_MODELS), opens the sessions and checks that graph, tokenizer and
  manifest fit;
- warm up: every session runs once, so the first request does not pay for it, and a graph
  that loads but cannot run fails here rather than on a user;
- start: the batcher runs. The model is then ready, but no request reaches it until the
  caller puts it into `state.models` (start-up all at once, a reload in one swap);
- release: the batcher stops and the sessions are freed.

Whatever goes wrong on the way up, of whatever exception class, releases what was built and
becomes one LoadFailed naming the model: a start-up reports it on readiness and exits with
it, a reload refuses with it, and neither waits on a model that will never come.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service import collector
from service.defaults import DefaultsError, choose_defaults
from service.engine import heap
from service.engine.model import LocalModel
from service.kinds import ModelKind
from service.manifest import MANIFEST_FILE
from service.runtime.loader import Found, ModelLoadError, file_stamps, load_model_dir, scan, verify_files
from service.runtime.session import InferenceError
from service.settings import Settings
from service.state import AppState

log = logging.getLogger("bertserve")

OnLoadError = Callable[[str], None]


class LoadFailed(Exception):
    """A model that could not be brought up; the message names it and says why, in one line."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(message)
        self.model = model


def _expected(exc: BaseException) -> bool:
    """The classes a broken model directory (or repository) raises; any other is a defect
    somewhere."""
    return isinstance(exc, ModelLoadError | InferenceError | LoadFailed | DefaultsError)


@dataclass(frozen=True)
class Repository:
    """The model repository as read now, before anything loads: its model directories and the
    default model of each task (service/defaults.py)."""

    found: list[Found]
    defaults: dict[ModelKind, str]


def _skipped(folder: Path) -> None:
    log.warning(
        f"skipped {folder.name}: no {MANIFEST_FILE}, not a model directory",
        extra={"directory": folder.name},
    )


def read_repository(settings: Settings, warn: bool = True) -> Repository:
    """Scan the repository (service/runtime/loader.py) and choose the defaults: the checks a
    start-up runs before it binds the port, and that start-up and every reload run again.
    A folder without a manifest is skipped, with a warning unless `warn` is off (the check
    before the port is bound leaves it to the load that follows)."""
    found = scan(settings, _skipped if warn else lambda _: None)
    return Repository(found, choose_defaults(settings.default_models, [entry.manifest for entry in found]))


def one_line(exc: BaseException) -> str:
    """An exception as one line: the start-up failure is one line on stderr, and a load error
    of a class nobody expected says which class it was."""
    text = " ".join(str(exc).split()) or repr(exc)
    return text if _expected(exc) else f"{type(exc).__name__}: {text}"


def _failed(name: str, what: str, exc: Exception) -> LoadFailed:
    """LoadFailed for model `name`; an unexpected class also logs its traceback, which the
    one line leaves out."""
    failure = LoadFailed(name, f"model {name!r} {what}: {one_line(exc)}")
    if not _expected(exc):
        log.error("model load failed", extra={"model": name, "reason": str(failure)}, exc_info=exc)
    return failure


async def bring_up(state: AppState, entry: Found) -> LocalModel:
    """Build, verify, warm up and start one model; LoadFailed (nothing left running) when any
    step fails."""
    pool = state.tokenize_pool
    assert pool is not None, "the lifespan sets the pool before any model loads"
    try:
        loaded = await asyncio.to_thread(load_model_dir, entry.directory, state.settings)
    except Exception as exc:
        raise _failed(entry.name, "was not loaded", exc) from exc
    try:
        served = LocalModel(
            loaded, state.settings, state.metrics, pool, state.cache, quiet=state.quiet, alone=state.alone
        )
    except BaseException as exc:
        loaded.close()
        if isinstance(exc, Exception):
            raise _failed(entry.name, "was not loaded", exc) from exc
        raise
    step = "failed its warm-up"
    try:
        if state.settings.warmup:
            await asyncio.to_thread(served.warm_up)
        step = "did not start"
        await served.start()
    except BaseException as exc:
        await release(served)
        if isinstance(exc, Exception):
            raise _failed(entry.name, step, exc) from exc
        raise
    return served


async def bring_up_all(state: AppState, entries: list[Found]) -> list[LocalModel]:
    """Every model up, or none: on a failure those already up are released."""
    up: list[LocalModel] = []
    try:
        for entry in entries:
            up.append(await bring_up(state, entry))
    except BaseException:
        for model in up:
            await release(model)
        raise
    return up


async def release(model: LocalModel) -> None:
    """Stop the model's batcher (whatever it still holds is answered 503) and free its
    sessions."""
    await model.stop()
    model.model.close()


async def unchanged(state: AppState, entry: Found, served: LocalModel) -> bool:
    """Whether a served model whose manifest still lists the same graph would pass a start-up
    as it is on disk now: the manifest alone is not to be trusted, a file may have been
    changed in place under it. With verification on, its files are hashed as a start-up
    hashes them, and a mismatch is LoadFailed. Without, a file whose size or modification
    time changed since the model was loaded makes it False: the model is built again, with
    every check a start-up runs."""
    if state.settings.verify_models:
        try:
            await asyncio.to_thread(verify_files, entry.directory, entry.manifest)
        except Exception as exc:
            raise _failed(entry.name, "does not verify", exc) from exc
        return True
    return await asyncio.to_thread(file_stamps, entry.directory, entry.manifest) == served.model.stamps


async def start_up(state: AppState, on_error: OnLoadError) -> None:
    """Bring up every model of the repository, then turn ready. Any failure turns readiness
    into the load error and is handed to `on_error` (the server exits with it)."""
    try:
        repository = await asyncio.to_thread(read_repository, state.settings)
        models = await bring_up_all(state, repository.found)
    except Exception as exc:
        reason = one_line(exc)
        if not _expected(exc):
            log.error("models not loaded", extra={"reason": reason}, exc_info=exc)
        state.fail_loading(reason)
        on_error(reason)
        return
    state.serve({model.name: model for model in models}, repository.defaults)
    for model in models:
        state.metrics.model_info.labels(*model.info_labels).set(1)
    # Everything loaded so far lives as long as the process: moved out of the collector's
    # view, a full collection does not walk it (under load such walks make the tail of the
    # latency: gen-2 pauses on busy cores, service/collector.py and
    # docs/design.md, "Other measured choices").
    gc.freeze()
    collector.defer_full_collections()  # to quiet moments: service/collector.py
    # What loading and warming up freed (the parsed graphs, each session's first runs) back
    # to the system: glibc otherwise keeps it, and how much it kept varied by 50 MB from one
    # start to the next of the same models.
    heap.trim()
    state.mark_ready()
    count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
    where = f" on {state.url}" if state.url else ""
    log.info(f"ready: serving {count}{where}", extra={"models": sorted(state.models), "defaults": repository.defaults})
