"""Run one export in a child process (`python -m service export ... --report-stages`), under
the cache's lock for its key: the serving process never imports torch, a crash of the export
is the child's alone, and its stages arrive as lines on its stdout."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.sources.cache import Cache, Entry
from service.sources.detect import SourceError
from service.sources.progress import Progress, stage_count

log = logging.getLogger("bertserve")
LOCK_POLL_S = 0.25  # how often a start waits on another process's export of the same key
OnStage = Callable[[str], None]
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Job:
    """One checkpoint to export: `options` are `bertserve export`'s (and part of the key)."""

    text: str
    checkpoint: Path
    key: str
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.options["name"])

    def command(self, out_dir: Path) -> list[str]:
        o = self.options
        cmd = [sys.executable, "-m", "service", "export", str(self.checkpoint), str(out_dir)]
        cmd += ["--task", o["task"], "--name", o["name"], "--report-stages"]
        if o.get("max_length"):
            cmd += ["--max-length", str(o["max_length"])]
        if o.get("pooling"):
            cmd += ["--pooling", o["pooling"]]
        return cmd + [f"--{flag}" for flag in ("pairs", "int8", "fp16") if o.get(flag)]


def check_export_extra() -> None:
    """Exporting needs torch and transformers, in the child; said before anything starts."""
    missing = [m for m in ("torch", "transformers", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise SourceError(
            f"exporting a checkpoint needs the export extra ({', '.join(missing)} missing): "
            "pip install 'bertserve[export]', or serve an exported model directory"
        )


async def ensure(cache: Cache, job: Job, on_stage: OnStage) -> Entry:
    """The cache entry for `job`: found, or exported by this process, or by another one that
    held the lock first (then found once it lets go)."""
    waiting = False
    while True:
        with cache.try_lock(job.key) as held:
            if held:
                entry = cache.entry(job.key)
                return entry if entry is not None else await _export(cache, job, on_stage)
        if not waiting:
            waiting = True
            on_stage("waiting for another process's export")
            log.info(f"export {job.name}: another process is exporting it: waiting", extra={"model": job.name})
        await asyncio.sleep(LOCK_POLL_S)


async def _export(cache: Cache, job: Job, on_stage: OnStage) -> Entry:
    partial = cache.partial(job.key)
    o = job.options
    progress = Progress(job.name, stage_count(bool(o.get("int8")), bool(o.get("fp16"))))
    ok = False
    try:
        log.info(f"export {job.name}: exporting {job.text} ({o['task']}) into the cache", extra={"model": job.name})

        def stage(name: str) -> None:
            if name != progress.stage:  # "load" is said at the start, before the child says it
                progress.begin(name)
                on_stage(name)

        stage("load")
        code, errors = await _run(job.command(partial / "model"), stage)
        if code != 0:
            raise SourceError(_reason(job, code, errors))
        for line in errors:
            if "WARNING" in line:
                log.warning(f"{job.name}: {line}", extra={"model": job.name})
        entry = cache.commit(job.key, partial, {"source": job.text, "checkpoint": str(job.checkpoint), **o})
        ok = True
        return entry
    finally:
        progress.close(ok)
        if not ok:
            shutil.rmtree(partial, ignore_errors=True)


async def _run(cmd: list[str], on_stage: OnStage) -> tuple[int, list[str]]:
    """The child's exit code and its stderr lines; killed if this task is cancelled (SIGTERM)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_die_with_parent,
    )
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[str] = []

    async def stages(stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").strip()
            if line.startswith("stage: "):
                on_stage(line.removeprefix("stage: "))

    async def collect(stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            errors.append(raw.decode(errors="replace").rstrip())

    try:
        await asyncio.gather(stages(proc.stdout), collect(proc.stderr))
        return await proc.wait(), errors
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _die_with_parent() -> None:
    """In the child, before it runs: killed if the serving process dies (SIGKILL, OOM), so no
    export outlives it still writing into the cache folder (Linux; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _reason(job: Job, code: int, errors: list[str]) -> str:
    """The export's own one-line error when it gave one; else how it ended."""
    said = [line for line in errors if line.startswith("bertserve export: error: ")]
    if said:
        return f"{job.text}: {said[-1].removeprefix('bertserve export: error: ')}"
    if code < 0:
        return f"{job.text}: the export was killed (signal {-code}); nothing was cached"
    last = next((line for line in reversed(errors) if line.strip()), "no output")
    return f"{job.text}: the export failed (exit code {code}): {last.strip()}"
