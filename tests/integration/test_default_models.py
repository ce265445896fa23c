"""The default model of a task on the real app and real sessions of the tiny models: two
classifiers served side by side, with BERTSERVE_DEFAULT_MODELS, a manifest's `default`, or
neither; at start-up and on a reload."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.integration.conftest import Client

TEXT = {"inputs": "a fine film"}
AMBIGUOUS = (
    "several classify models are served (tiny-clf, tiny-clf-b) and none is the default: name one in 'model', "
    "or choose the default with BERTSERVE_DEFAULT_MODELS=classify=<name>"
)


@pytest.fixture
def two_classifiers(tiny_repo: Path, tmp_path: Path) -> Path:
    """The tiny repository with a second classifier, tiny-clf-b, beside tiny-clf."""
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    shutil.copytree(repo / "tiny-clf", repo / "tiny-clf-b")
    _edit(repo / "tiny-clf-b", name="tiny-clf-b")
    return repo


def _edit(directory: Path, **fields: object) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, **fields}))


async def _defaults(c: httpx.AsyncClient) -> dict[str, bool]:
    return {m["name"]: m["default"] for m in (await c.get("/models")).json()["models"]}


async def _classified_by(c: httpx.AsyncClient) -> str:
    r = await c.post("/classify", json=TEXT)
    assert r.status_code == 200, r.text
    return str(r.json()["model"])


async def test_without_a_default_a_request_naming_no_model_is_refused_naming_the_setting(
    make_client: Client, two_classifiers: Path
) -> None:
    async with make_client(models=two_classifiers) as c:
        r = await c.post("/classify", json=TEXT)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == {"type": "invalid_request", "message": AMBIGUOUS, "param": "model"}
        named = await c.post("/classify", json={**TEXT, "model": "tiny-clf-b"})
        assert named.status_code == 200 and named.json()["model"] == "tiny-clf-b", named.text
        assert (await c.post("/embed", json=TEXT)).status_code == 200  # the only embedding model
        assert await _defaults(c) == {"tiny-clf": False, "tiny-clf-b": False, "tiny-emb": True}


async def test_the_setting_chooses_the_default_over_the_manifests(make_client: Client, two_classifiers: Path) -> None:
    _edit(two_classifiers / "tiny-clf", default=True)
    async with make_client(models=two_classifiers, default_models={"classify": "tiny-clf-b"}) as c:
        assert await _classified_by(c) == "tiny-clf-b"
        assert await _defaults(c) == {"tiny-clf": False, "tiny-clf-b": True, "tiny-emb": True}
        named = await c.post("/classify", json={**TEXT, "model": "tiny-clf"})
        assert named.status_code == 200 and named.json()["model"] == "tiny-clf", named.text


async def test_a_reload_follows_the_manifests_and_refuses_two_claims(
    make_client: Client, two_classifiers: Path
) -> None:
    """The manifest's flag is read again on every reload, for a model whose graph is unchanged
    too; two claims for one task are refused as a whole, and the defaults served stay."""
    async with make_client(models=two_classifiers) as c:
        _edit(two_classifiers / "tiny-clf", default=True)
        r = await c.post("/admin/reload")
        assert r.status_code == 200 and r.json()["unchanged"] == ["tiny-clf", "tiny-clf-b", "tiny-emb"], r.text
        assert await _classified_by(c) == "tiny-clf"

        _edit(two_classifiers / "tiny-clf-b", default=True)
        r = await c.post("/admin/reload")
        assert r.status_code == 422, r.text
        assert r.json()["error"]["type"] == "model_rejected"
        assert r.json()["error"]["message"] == (
            "the model repository was not reloaded: tiny-clf, tiny-clf-b each say they are the default classify "
            'model ("default": true in their manifest.json): clear it in all but one, or set '
            "BERTSERVE_DEFAULT_MODELS=classify=<name>"
        )
        assert await _classified_by(c) == "tiny-clf"

        _edit(two_classifiers / "tiny-clf", default=False)
        r = await c.post("/admin/reload")
        assert r.status_code == 200, r.text
        assert await _classified_by(c) == "tiny-clf-b"
        assert await _defaults(c) == {"tiny-clf": False, "tiny-clf-b": True, "tiny-emb": True}


async def test_a_reload_that_removes_the_default_the_setting_names_is_refused(
    make_client: Client, two_classifiers: Path
) -> None:
    async with make_client(models=two_classifiers, default_models={"classify": "tiny-clf-b"}) as c:
        shutil.rmtree(two_classifiers / "tiny-clf-b")
        r = await c.post("/admin/reload")
        assert r.status_code == 422, r.text
        assert r.json()["error"]["message"] == (
            "the model repository was not reloaded: BERTSERVE_DEFAULT_MODELS names classify=tiny-clf-b, but "
            "'tiny-clf-b' is not served (classify models: tiny-clf)"
        )
        assert await _classified_by(c) == "tiny-clf-b"


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        (
            {"classify": "tiny-clf-c"},
            "BERTSERVE_DEFAULT_MODELS names classify=tiny-clf-c, but 'tiny-clf-c' is not served "
            "(classify models: tiny-clf, tiny-clf-b)",
        ),
        (
            {"embed": "tiny-clf"},
            "BERTSERVE_DEFAULT_MODELS names embed=tiny-clf, but 'tiny-clf' is a classify model "
            "(embed models: tiny-emb)",
        ),
    ],
)
async def test_a_setting_naming_no_model_of_its_task_stops_start_up(
    two_classifiers: Path, setting: dict[str, str], reason: str
) -> None:
    """Found from the manifests, before any model loads: readiness names it, and the server
    (service/server.py) exits with it, as it does with every load error."""
    reasons: list[str] = []
    failed = asyncio.Event()

    def on_load_error(why: str) -> None:
        reasons.append(why)
        failed.set()

    app = create_app(Settings(models=two_classifiers, default_models=setting), on_load_error=on_load_error)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(failed.wait(), timeout=60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ready = await client.get("/health/ready")
    assert reasons == [reason]
    assert ready.status_code == 503 and ready.json()["error"]["message"] == f"the models could not be loaded: {reason}"
