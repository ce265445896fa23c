"""Priority levels on the wire, through the ASGI app on tiny models: the body's `priority`,
the X-Priority header and which wins, Cohere's integer priority, the 422 of an unknown
level, and the room of each level in the queue."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Client, hold_runtime
from tests.integration.test_api import _full_queue
from tests.sync import until_async

# Every model route whose items queue, with a body it answers (the tagger route has no model
# among the tiny ones: it answers 404, after the body, priority included, is validated).
ROUTES: list[tuple[str, dict[str, Any], int]] = [
    ("/classify", {"inputs": "a fine film"}, 200),
    ("/embed", {"inputs": "a fine film"}, 200),
    ("/v1/embeddings", {"input": "a fine film", "model": "tiny-emb"}, 200),
    ("/rerank", {"query": "film", "texts": ["a fine film"], "model": "tiny-emb"}, 200),
    ("/classify/tokens", {"inputs": "a fine film"}, 404),
]


def waits(metrics: str, model: str) -> dict[str, float]:
    """Items whose queue wait was observed, per level, for a model (levels with none left out)."""
    pattern = rf'bertserve_queue_wait_seconds_count{{model="{model}",priority="(\w+)"}} ([\d.]+)'
    return {level: float(count) for level, count in re.findall(pattern, metrics) if float(count)}


@pytest.mark.parametrize(("path", "body", "status"), ROUTES)
async def test_every_model_route_takes_a_priority_in_its_body(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int
) -> None:
    r = await client.post(path, json={**body, "priority": "batch"})
    assert r.status_code == status, r.text
    bad = await client.post(path, json={**body, "priority": "urgent"})
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "priority"


async def test_the_level_asked_is_the_level_served_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="bertserve.access")
    await client.post("/classify", json={"inputs": ["a", "b"], "priority": "batch"})
    await client.post("/classify", json={"inputs": "c"}, headers={"X-Priority": "batch"})
    await client.post("/classify", json={"inputs": "d"})
    assert waits((await client.get("/metrics")).text, "tiny-clf") == {"interactive": 1.0, "batch": 3.0}
    logged = [r.__dict__.get("priority") for r in caplog.records if r.name == "bertserve.access"]
    assert logged == ["batch", "batch", "interactive", ""]  # the last: GET /metrics


async def test_the_body_wins_over_the_header(client: httpx.AsyncClient) -> None:
    r = await client.post("/classify", json={"inputs": "a", "priority": "interactive"}, headers={"X-Priority": "batch"})
    assert r.status_code == 200
    # A header naming no level is not read when the body says one.
    r = await client.post("/classify", json={"inputs": "b", "priority": "batch"}, headers={"X-Priority": "soon"})
    assert r.status_code == 200
    assert waits((await client.get("/metrics")).text, "tiny-clf") == {"interactive": 1.0, "batch": 1.0}


async def test_an_unknown_header_level_is_422_in_the_envelope(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"input": "a", "model": "tiny-emb"}, headers={"X-Priority": "high"})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["param"] == "x-priority"
    assert error["message"] == "x-priority must be one of interactive, batch"
    ok = await client.post("/v1/embeddings", json={"input": "a", "model": "tiny-emb"}, headers={"X-Priority": "Batch"})
    assert ok.status_code == 200


@pytest.mark.parametrize(("priority", "level"), [(0, "interactive"), (1, "batch"), (999, "batch")])
async def test_cohere_priority_lower_is_more_urgent(client: httpx.AsyncClient, priority: int, level: str) -> None:
    body = {"model": "tiny-emb", "query": "film", "documents": ["a fine film", "a cat"], "priority": priority}
    r = await client.post("/v2/rerank", json=body)
    assert r.status_code == 200, r.text
    # An embedding model ranks: the query and each document are an item.
    assert waits((await client.get("/metrics")).text, "tiny-emb") == {level: 3.0}


async def test_cohere_priority_below_zero_is_422(client: httpx.AsyncClient) -> None:
    body = {"model": "tiny-emb", "query": "film", "documents": ["a fine film"], "priority": -1}
    r = await client.post("/v2/rerank", json=body)
    assert r.status_code == 422
    assert r.json()["error"]["param"] == "priority"


async def test_bulk_requests_get_the_429_first_while_live_ones_are_admitted(make_client: Client) -> None:
    async with make_client(max_queue_items=4) as c:  # batch items may hold half: 2
        served = c.app.state.bertserve.models["tiny-clf"]
        release = hold_runtime(served)
        running = asyncio.ensure_future(c.post("/classify", json={"inputs": "a"}))
        await until_async(lambda: served.batcher.busy == 1)
        bulk = asyncio.ensure_future(c.post("/classify", json={"inputs": ["b", "c"], "priority": "batch"}))
        await until_async(lambda: served.batcher.queued == 2)
        refused = await c.post("/classify", json={"inputs": "d", "priority": "batch"})
        live = asyncio.ensure_future(c.post("/classify", json={"inputs": ["e", "f"]}))
        await until_async(lambda: served.batcher.queued == 4)
        release.set()
        assert [(await f).status_code for f in (running, bulk, live)] == [200, 200, 200]
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "BERTSERVE_BATCH_QUEUE_SHARE" in refused.json()["error"]["message"]
        metrics = (await c.get("/metrics")).text
        assert 'bertserve_rejections_total{model="tiny-clf",priority="batch",reason="overloaded"} 1.0' in metrics
        too_big = await c.post("/classify", json={"inputs": ["g", "h", "i"], "priority": "batch"})
        assert too_big.status_code == 422
        assert (
            "more than the model's room of 2 for batch priority (BERTSERVE_BATCH_QUEUE_SHARE)"
            in too_big.json()["error"]["message"]
        )


async def test_the_fast_429_is_counted_at_the_headers_level(make_client: Client) -> None:
    async with make_client(max_queue_items=2) as c:
        async with _full_queue(c):
            bulk = await c.post("/classify", content=b"{not json", headers={"X-Priority": "batch"})
            live = await c.post("/classify", content=b"{not json")
        assert bulk.status_code == live.status_code == 429  # refused before the body is read
        metrics = (await c.get("/metrics")).text
        for level in ("batch", "interactive"):
            assert (
                f'bertserve_rejections_total{{model="tiny-clf",priority="{level}",reason="overloaded"}} 1.0' in metrics
            )
