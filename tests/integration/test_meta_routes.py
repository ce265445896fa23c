"""The routes that run no model, in the shapes other servers' clients expect: OpenAI's
GET /v1/models and text-embeddings-inference's GET /health."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.integration.conftest import Client, wait_ready


async def test_v1_models_is_openai_s_list(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"object", "data"} and body["object"] == "list"
    ours = {m["name"] for m in (await client.get("/models")).json()["models"]}
    assert {m["id"] for m in body["data"]} == ours
    for model in body["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model" and model["owned_by"] == "bertserve"
        assert isinstance(model["created"], int) and 0 < time.time() - model["created"] < 3600


async def test_v1_models_through_the_openai_client(client: httpx.AsyncClient) -> None:
    openai = pytest.importorskip("openai")
    transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://test/v1") as http:
        api = openai.AsyncOpenAI(base_url="http://test/v1", api_key="unused", http_client=http)
        listed = [model async for model in api.models.list()]
    assert {m.id for m in listed} == {"tiny-clf", "tiny-emb"}
    assert all(m.object == "model" and m.owned_by == "bertserve" and m.created > 0 for m in listed)


async def test_v1_models_needs_a_key_when_keys_are_set(make_client: Client) -> None:
    async with make_client(api_keys="k1") as c:
        r = await c.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        r = await c.get("/v1/models", headers={"Authorization": "Bearer k1"})
        assert r.status_code == 200 and r.json()["object"] == "list"
        assert (await c.get("/health")).status_code == 200  # health stays open


async def test_health_is_200_with_an_empty_body_when_ready_503_when_draining(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"
    client.app.state.bertserve.start_draining()  # type: ignore[attr-defined]
    r = await client.get("/health")
    assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable"
    assert "draining" in r.json()["error"]["message"]


async def test_health_is_503_while_the_models_load(tiny_repo: Path) -> None:
    app = create_app(Settings(models=tiny_repo))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            first = await c.get("/health")
            await wait_ready(c)
            ready = await c.get("/health")
    assert first.status_code == 503 and "loading" in first.json()["error"]["message"]
    assert ready.status_code == 200 and ready.content == b""


async def test_meta_routes_are_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "get" in paths["/v1/models"] and "get" in paths["/health"]
    assert set(paths["/health"]["get"]["responses"]) == {"200", "503"}
