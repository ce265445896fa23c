"""From the sources asked for to a model repository the service loads as any other.

Before the port is bound (every refusal is one line, at once): each source is resolved (a hub
id through huggingface_hub), its task read, its cache key computed. The repository is a private
folder of links: to exported model directories, to cache entries, to the model directories of
--models when it is given too. A checkpoint not yet in the cache is exported behind the port
(`prepare`), listed meanwhile in the repository's .building.json with its stage, which
/health/ready and /models show; readiness waits for it.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service import building
from service.runtime.loader import discover, resolve_providers_or_fail
from service.runtime.session import CUDA
from service.settings import Settings
from service.sources import hub
from service.sources.cache import Cache, cache_key, default_dir
from service.sources.detect import SourceError, detect, read_json
from service.sources.export import Job, check_export_extra, ensure
from service.sources.spec import Source, parse_entries

log = logging.getLogger("bertserve")
Finish = Callable[[], None]


@dataclass
class Plan:
    """The repository to serve, and the exports still to run into it."""

    repository: Path
    cache: Cache
    jobs: list[Job] = field(default_factory=list)

    def claim(self, name: str) -> None:
        if (self.repository / name).is_symlink() or any(j.name == name for j in self.jobs):
            raise SourceError(f"model name {name} is served twice: give one of them --name")

    def link(self, name: str, folder: Path) -> None:
        self.claim(name)
        self.link_exported(name, folder)

    def link_exported(self, name: str, folder: Path) -> None:
        (self.repository / name).symlink_to(folder.resolve(), target_is_directory=True)

    def show(self, current: Job | None = None, stage: str = "") -> None:
        entries = {}
        for job in self.jobs:
            if job is current:
                entries[job.name] = {"task": job.options["task"], "state": "building", "stage": stage}
            elif not (self.repository / job.name).exists():
                entries[job.name] = {"task": job.options["task"], "state": "queued"}
        building.write(self.repository, entries)


def plan(settings: Settings, sources: list[Source], on_cuda: bool, models: Path | None) -> Plan:
    """Resolve every source; link what can be served now. `models`: the --models repository."""
    root = settings.cache_dir or default_dir()
    repository = Path(tempfile.mkdtemp(prefix="bertserve-models-"))
    atexit.register(shutil.rmtree, repository, True)
    result = Plan(repository, Cache(root))
    if models is not None:
        for folder in discover(models):
            result.link(folder.name, folder)
    for source in sources:
        _add(result, source, on_cuda)
    if result.jobs:
        check_export_extra()
        result.show()
    return result


def _add(result: Plan, source: Source, on_cuda: bool) -> None:
    folder = Path(source.text).expanduser()
    if folder.is_dir() and (folder / "manifest.json").is_file():
        if source.given:
            raise SourceError(
                f"{source.text} is an exported model directory, served as it is: "
                f"{', '.join(source.overrides())} apply to checkpoints"
            )
        result.link(str(read_json(folder / "manifest.json").get("name") or folder.name), folder)
        return
    if folder.exists():
        known_as = folder.resolve().name
    elif hub.looks_like_hub_id(source.text):
        known_as = hub.split_id(source.text)[0]
        folder = hub.download(source.text)
    else:
        raise SourceError(f"{source.text}: no such folder, and not a hub id (org/name or org/name@revision)")
    name = source.name or known_as.rsplit("/", 1)[-1]
    found = detect(folder, known_as, source.task)
    if found.warning:
        log.warning(found.warning, extra={"model": name})
    pairs = bool(source.pairs)
    if pairs and found.task in ("embed", "entities"):
        raise SourceError(f"{source.text}: --pairs applies to classify (a pair classifier), not {found.task}")
    options: dict[str, Any] = {
        "task": found.task,
        "name": name,
        "max_length": source.max_length,
        "pooling": found.pooling,
        "pairs": pairs,
        "int8": (not on_cuda) if source.int8 is None else source.int8,
        "fp16": on_cuda if source.fp16 is None else source.fp16,
    }
    key = cache_key(folder, options)
    entry = result.cache.entry(key)
    if entry is not None:
        log.info(f"{name}: from the export cache ({entry.folder})", extra={"model": name})
        result.link(name, entry.model)
    else:
        result.claim(name)
        result.jobs.append(Job(source.text, folder, key, options))


def _shown(result: Plan, job: Job) -> Callable[[str], None]:
    return lambda stage: result.show(job, stage)


def preparer(result: Plan) -> Callable[[], Awaitable[Finish]]:
    """The exports, run one after the other behind the bound port (two at once would share
    the same cores); what to call once the models are served."""

    async def prepare() -> Finish:
        for job in result.jobs:
            if (result.repository / job.name).exists():
                continue
            entry = await ensure(result.cache, job, _shown(result, job))
            result.link_exported(job.name, entry.model)
        warm_start = time.perf_counter()
        building.write(
            result.repository,
            {j.name: {"task": j.options["task"], "state": "building", "stage": "warm up"} for j in result.jobs},
        )

        def finish() -> None:
            building.write(result.repository, {})
            log.info(f"warm up done in {time.perf_counter() - warm_start:.1f} s")

        return finish

    return prepare


def for_sources(settings: Settings, given: list[Source]) -> tuple[Settings, Callable[[], Awaitable[Finish]] | None]:
    """The settings to serve with (the repository of links) and the exports to run first, for
    the sources of --model and BERTSERVE_MODEL_SOURCES; as they were when there are none."""
    sources = [*parse_entries(",".join(settings.model_sources)), *given]
    if not sources:
        return settings, None
    on_cuda = resolve_providers_or_fail(settings.provider)[0] == CUDA
    # --models (or BERTSERVE_MODELS) named too: its models are served beside the sources.
    models = settings.models if "models" in settings.model_fields_set else None
    result = plan(settings, sources, on_cuda, models)
    served = settings.model_copy(update={"models": result.repository})
    return served, preparer(result) if result.jobs else None
