"""The model lifecycle at start-up, on the real app and real sessions of the tiny models:
each file hashed once, and any load failure reported on readiness, naming the model, in
one line."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

import service.lifecycle
import service.manifest
import service.runtime.loader
from service.app import create_app
from service.runtime.loader import LoadedModel, scan
from service.settings import Settings
from tests.integration.conftest import wait_ready


@asynccontextmanager
async def _started(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, list[str], asyncio.Event]]:
    """The app with its lifespan running, what it reported through `on_load_error`, and an
    event set when it did."""
    reasons: list[str] = []
    failed = asyncio.Event()

    def on_load_error(reason: str) -> None:
        reasons.append(reason)
        failed.set()

    app = create_app(settings, on_load_error=on_load_error)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, reasons, failed


async def test_each_model_file_is_hashed_once_at_start_up(tiny_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = service.manifest.sha256_file
    hashed: Counter[Path] = Counter()

    def counting(path: Path) -> str:
        hashed[path.resolve()] += 1
        return real(path)

    # Wherever a module took the function from: the manifest module and the loader's import.
    monkeypatch.setattr(service.manifest, "sha256_file", counting)
    monkeypatch.setattr(service.runtime.loader, "sha256_file", counting)
    settings = Settings(models=tiny_repo, verify_models=True, instances=1)
    listed = {
        (entry.directory / name).resolve() for entry in scan(settings) for name in entry.manifest.files
    }  # what `bertserve serve` checks before it binds the port
    async with _started(settings) as (client, reasons, _):
        await wait_ready(client)
    assert not reasons
    assert len(listed) > 4  # graphs, tokenizer files and configs of both models
    assert hashed == dict.fromkeys(listed, 1)


async def test_an_unexpected_exception_turns_readiness_into_the_load_error(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure of a class the loader does not expect, on the second model: readiness names
    it, the first model (already up) is released, and the reason is one line."""
    real = service.runtime.loader.load_model_dir
    loaded: list[LoadedModel] = []

    def load(directory: Path, settings: Settings) -> LoadedModel:
        if directory.name == "tiny-emb":
            raise RuntimeError("something nobody planned for\non two lines")
        model = real(directory, settings)
        loaded.append(model)
        return model

    monkeypatch.setattr(service.lifecycle, "load_model_dir", load)
    async with _started(Settings(models=tiny_repo, instances=1)) as (client, reasons, failed):
        await asyncio.wait_for(failed.wait(), timeout=60)
        ready = await client.get("/health/ready")
        classify = await client.post("/classify", json={"inputs": "a fine film"})
    (reason,) = reasons
    assert reason == "model 'tiny-emb' was not loaded: RuntimeError: something nobody planned for on two lines"
    assert ready.status_code == 503
    assert ready.json()["error"]["message"] == f"the models could not be loaded: {reason}"
    assert classify.status_code == 503 and "tiny-emb" in classify.json()["error"]["message"]
    (clf,) = loaded
    assert clf.name == "tiny-clf"
    assert all("_session" not in s.__dict__ for s in clf.every_session), "the model already up was not released"


async def test_a_corrupt_tokenizer_names_its_model(tiny_repo: Path, tmp_path: Path) -> None:
    """A real load failure, found by the load itself (verification off, so no checksum is
    there to catch it first)."""
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    (repo / "tiny-emb" / "tokenizer.json").write_text('{"model": ')
    async with _started(Settings(models=repo, verify_models=False, instances=1)) as (client, reasons, failed):
        await asyncio.wait_for(failed.wait(), timeout=60)
        ready = await client.get("/health/ready")
    (reason,) = reasons
    assert reason.startswith("model 'tiny-emb' was not loaded: ") and "tokenizer.json does not load" in reason
    assert "\n" not in reason
    assert ready.status_code == 503 and reason in ready.json()["error"]["message"]


def _skips(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bertserve" and r.getMessage().startswith("skipped")]


async def test_a_folder_without_a_manifest_is_skipped_with_a_warning(
    tiny_repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A backup left in the repository does not stop the start-up: it is named once in a
    warning. A hidden folder (a reload's swap) is passed over without a word."""
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    shutil.copytree(repo / "tiny-clf", repo / "old-backup")
    (repo / "old-backup" / "manifest.json").unlink()
    shutil.copytree(repo / "old-backup", repo / ".tiny-clf.old")
    caplog.set_level("INFO", logger="bertserve")
    async with _started(Settings(models=repo, instances=1)) as (client, reasons, _):
        await wait_ready(client)
        models = (await client.get("/models")).json()["models"]
    assert not reasons
    assert sorted(m["name"] for m in models) == ["tiny-clf", "tiny-emb"]
    assert _skips(caplog) == ["skipped old-backup: no manifest.json, not a model directory"]
    (ready,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready")]
    assert ready == "ready: serving 2 models"  # and where, when a server listens (tests/e2e/test_startup.py)


async def test_a_folder_with_a_manifest_that_does_not_verify_still_stops_start_up(
    tiny_repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    (repo / "old-backup").mkdir()
    caplog.set_level("WARNING", logger="bertserve")  # the root logger's level is the exporter's business
    with (repo / "tiny-emb" / "model.onnx").open("r+b") as fh:
        fh.seek(-64, 2)
        fh.write(b"\0" * 64)
    async with _started(Settings(models=repo, instances=1)) as (client, reasons, failed):
        await asyncio.wait_for(failed.wait(), timeout=60)
        ready = await client.get("/health/ready")
    (reason,) = reasons
    assert reason.startswith("model 'tiny-emb' was not loaded: ") and "does not match its manifest checksum" in reason
    assert ready.status_code == 503
    assert _skips(caplog) == ["skipped old-backup: no manifest.json, not a model directory"]


async def test_a_repository_of_folders_without_manifests_names_them(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    (repo / "old-backup").mkdir(parents=True)
    (repo / "notes").mkdir()
    async with _started(Settings(models=repo, instances=1)) as (_, reasons, failed):
        await asyncio.wait_for(failed.wait(), timeout=60)
    assert reasons == [f"no model directory in {repo}: notes, old-backup have no manifest.json (run `make models`)"]
