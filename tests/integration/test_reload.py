"""POST /admin/reload on the real app and real sessions of the tiny models: add, replace,
refuse a broken replacement, remove; the cache and the replaced session go with the old model."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from service.export.exporter import ExportOptions, export_checkpoint
from service.manifest import Manifest, sha256_file
from tests.integration.conftest import Client
from tests.sync import until_async
from tests.tiny import make_checkpoint

TEXTS = ["a fine film", "a dull one"]


@pytest.fixture(scope="module")
def other_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-clf exported again from other weights: another graph, other logits."""
    root = tmp_path_factory.mktemp("other")
    ckpt = make_checkpoint(root / "ckpt", "bert", head=True, seed=7)
    out = root / "tiny-clf"
    export_checkpoint(ExportOptions(ckpt, out, "classify", name="tiny-clf"), log=lambda _: None)
    return out


def _rename(directory: Path, name: str) -> None:
    manifest = Manifest.read(directory)
    manifest.name = name
    manifest.write(directory)


def _put(source: Path, target: Path) -> None:
    """Replace a model directory the way an operator should: copy beside, then rename over."""
    staging = target.with_name(f".{target.name}.new")
    shutil.copytree(source, staging)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


async def _models(c: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    return {m["name"]: m for m in (await c.get("/models")).json()["models"]}


async def _logits(c: httpx.AsyncClient) -> list[dict[str, float]]:
    r = await c.post("/classify", json={"inputs": TEXTS, "function": "none", "model": "tiny-clf"})
    assert r.status_code == 200, r.text
    return [{p["label"]: p["score"] for p in labels} for labels in r.json()["predictions"]]


async def test_reload_adds_replaces_refuses_and_removes(
    make_client: Client, tiny_repo: Path, other_classifier: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    async with make_client(models=repo, cache_bytes=1 << 20) as c:
        state = c.app.state.bertserve  # type: ignore[attr-defined]
        before = await _models(c)
        assert set(before) == {"tiny-clf", "tiny-emb"}
        served = Manifest.read(repo / "tiny-clf").variants[str(before["tiny-clf"]["variant"])].file
        assert before["tiny-clf"]["sha256"] == Manifest.read(repo / "tiny-clf").files[served]
        old_logits = await _logits(c)  # now in the cache too

        r = await c.post("/admin/reload")
        assert r.status_code == 200, r.text
        assert r.json() == {"added": [], "replaced": [], "removed": [], "unchanged": ["tiny-clf", "tiny-emb"]}
        assert (await _models(c))["tiny-clf"]["loaded_at"] == before["tiny-clf"]["loaded_at"]

        # Add: a new directory under a new name.
        shutil.copytree(repo / "tiny-emb", repo / "tiny-emb-b")
        _rename(repo / "tiny-emb-b", "tiny-emb-b")
        r = await c.post("/admin/reload")
        assert r.json()["added"] == ["tiny-emb-b"], r.text
        e = await c.post("/embed", json={"inputs": TEXTS, "model": "tiny-emb-b"})
        assert e.status_code == 200, e.text

        # Replace: another graph under the same name serves at once; the cache is not stale.
        old_clf = state.models["tiny-clf"]
        _put(other_classifier, repo / "tiny-clf")
        r = await c.post("/admin/reload")
        assert r.status_code == 200 and r.json()["replaced"] == ["tiny-clf"], r.text
        after = await _models(c)
        assert after["tiny-clf"]["sha256"] == Manifest.read(other_classifier).files["model.onnx"]
        assert after["tiny-clf"]["variant"] == "fp32"  # the new export has no int8
        assert after["tiny-clf"]["loaded_at"] > before["tiny-clf"]["loaded_at"]
        new_logits = await _logits(c)
        assert new_logits != old_logits
        await until_async(lambda: not state.reload_tasks)
        assert "_session" not in old_clf.model.session.__dict__, "the replaced session was not freed"

        # A broken replacement is refused, naming the model; the served one is untouched.
        broken = tmp_path / "broken-clf"
        shutil.copytree(other_classifier, broken)
        graph = broken / "model.onnx"
        graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
        manifest = Manifest.read(broken)
        manifest.files["model.onnx"] = sha256_file(graph)  # a checksum that matches: the graph itself is bad
        manifest.write(broken)
        _put(broken, repo / "tiny-clf")
        shutil.rmtree(repo / "tiny-emb-b")  # not applied either: all or nothing
        r = await c.post("/admin/reload")
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["type"] == "model_rejected" and error["param"] == "tiny-clf"
        assert "'tiny-clf'" in error["message"] and "does not load" in error["message"]
        assert await _models(c) == after
        assert await _logits(c) == new_logits

        # Fixed, then reloaded: the removal goes through with it.
        _put(other_classifier, repo / "tiny-clf")
        r = await c.post("/admin/reload")
        assert r.json() == {
            "added": [],
            "replaced": [],
            "removed": ["tiny-emb-b"],
            "unchanged": ["tiny-clf", "tiny-emb"],
        }
        gone = await c.post("/embed", json={"inputs": TEXTS, "model": "tiny-emb-b"})
        assert gone.status_code == 404
        metrics = (await c.get("/metrics")).text
        assert 'bertserve_model_info{model="tiny-emb-b"' not in metrics
        assert (
            'bertserve_model_info{model="tiny-clf",provider="CPUExecutionProvider",task="classify",variant="fp32"} 1.0'
            in metrics
        )


async def test_a_graph_changed_in_place_under_its_manifest_is_refused(
    make_client: Client, tiny_repo: Path, tmp_path: Path
) -> None:
    """The manifest still lists the served graph's checksum, but the graph on disk was cut
    short: a restart would refuse it, so a reload does too, naming the model."""
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    graph = repo / "tiny-clf" / Manifest.read(repo / "tiny-clf").variants["int8"].file
    whole = graph.read_bytes()
    async with make_client(models=repo) as c:
        before = await _models(c)
        logits = await _logits(c)
        with graph.open("r+b") as fh:
            fh.truncate(len(whole) // 2)
        r = await c.post("/admin/reload")
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["type"] == "model_rejected" and error["param"] == "tiny-clf", error
        assert error["message"] == (
            f"model 'tiny-clf' does not verify: tiny-clf: {graph.name} does not match its manifest checksum "
            "(corrupt or replaced)"
        )
        assert await _models(c) == before
        assert await _logits(c) == logits

        graph.write_bytes(whole)
        r = await c.post("/admin/reload")
        assert r.status_code == 200 and r.json()["unchanged"] == ["tiny-clf", "tiny-emb"], r.text


async def test_without_verification_a_graph_changed_in_place_is_loaded_again(
    make_client: Client, tiny_repo: Path, tmp_path: Path
) -> None:
    """No checksums to compare: a file whose size or time changed since it was loaded makes
    the model load again, with every other check a start-up runs."""
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    graph = repo / "tiny-clf" / Manifest.read(repo / "tiny-clf").variants["int8"].file
    whole = graph.read_bytes()
    async with make_client(models=repo, verify_models=False) as c:
        before = await _models(c)
        with graph.open("r+b") as fh:
            fh.truncate(len(whole) // 2)
        r = await c.post("/admin/reload")
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["param"] == "tiny-clf" and "'tiny-clf' was not loaded" in error["message"], error
        assert "does not load" in error["message"], error
        assert await _models(c) == before

        graph.write_bytes(whole)  # the same bytes again, written anew: built again, and it loads
        r = await c.post("/admin/reload")
        assert r.status_code == 200 and r.json()["replaced"] == ["tiny-clf"], r.text
        assert r.json()["unchanged"] == ["tiny-emb"]
        r = await c.post("/admin/reload")
        assert r.json()["unchanged"] == ["tiny-clf", "tiny-emb"], r.text


async def test_reload_needs_the_api_key_when_keys_are_set(make_client: Client) -> None:
    async with make_client(api_keys=["k1"]) as c:
        assert (await c.post("/admin/reload")).status_code == 401
        r = await c.post("/admin/reload", headers={"Authorization": "Bearer k1"})
        assert r.status_code == 200, r.text


async def test_a_repository_with_the_same_name_twice_is_refused(
    make_client: Client, tiny_repo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    async with make_client(models=repo) as c:
        shutil.copytree(repo / "tiny-emb", repo / "tiny-emb-copy")  # still named tiny-emb
        r = await c.post("/admin/reload")
        assert r.status_code == 422 and "served twice: tiny-emb" in r.json()["error"]["message"], r.text
        assert set(await _models(c)) == {"tiny-clf", "tiny-emb"}


async def test_a_folder_without_a_manifest_is_skipped_on_reload(
    make_client: Client, tiny_repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A backup copied into the repository does not make every reload a 422: it is skipped
    with a warning, and what else changed is applied."""
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    caplog.set_level("WARNING", logger="bertserve")
    async with make_client(models=repo) as c:
        shutil.copytree(repo / "tiny-emb", repo / "old-backup")
        (repo / "old-backup" / "manifest.json").unlink()
        shutil.copytree(repo / "tiny-emb", repo / "tiny-emb-b")
        _rename(repo / "tiny-emb-b", "tiny-emb-b")
        r = await c.post("/admin/reload")
        assert r.status_code == 200, r.text
        assert r.json()["added"] == ["tiny-emb-b"] and r.json()["unchanged"] == ["tiny-clf", "tiny-emb"], r.text
        skipped = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("skipped")]
        assert skipped == ["skipped old-backup: no manifest.json, not a model directory"]

        # A folder with a manifest is a model directory: one that does not load is refused.
        (repo / "old-backup" / "manifest.json").write_text('{"name": "old-backup"}')
        r = await c.post("/admin/reload")
        assert r.status_code == 422 and "invalid manifest" in r.json()["error"]["message"], r.text
        assert set(await _models(c)) == {"tiny-clf", "tiny-emb", "tiny-emb-b"}
