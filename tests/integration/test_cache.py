"""The result cache through the app, on real sessions of the tiny models."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.integration.conftest import Client, hold_runtime
from tests.sync import until_async

CACHE = 1 << 20


def _metric(text: str, name: str, **labels: str) -> float:
    inside = ",".join(f'{k}="{v}"' for k, v in labels.items())
    selector = re.escape(f"{{{inside}}}") if labels else ""
    found = re.search(rf"^{name}{selector} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def _metrics(c: httpx.AsyncClient) -> str:
    return (await c.get("/metrics")).text


async def _looked_up(c: httpx.AsyncClient, rows: int) -> bool:
    """Whether the cache has looked up `rows` rows of tiny-clf (hit, shared with one in
    flight, or missed): the requests that asked for them have queued what they will queue."""
    text = await _metrics(c)
    results = ("hit", "shared", "miss")
    return sum(_metric(text, "bertserve_cache_rows_total", model="tiny-clf", result=r) for r in results) >= rows


async def test_answers_are_bit_identical_with_and_without_the_cache(make_client: Client) -> None:
    requests = [
        ("/embed", {"inputs": ["a fine film", "a dull one"]}),
        ("/classify", {"inputs": ["a fine film", "a dull one"], "function": "none"}),
        ("/v1/embeddings", {"input": "a fine film", "model": "tiny-emb", "encoding_format": "base64"}),
    ]
    # One variant for both apps: under auto each would time int8 against fp32 on its own.
    async with make_client(variant="fp32") as plain:
        without = [await plain.post(path, json=body) for path, body in requests]
    async with make_client(cache_bytes=CACHE, variant="fp32") as cached:
        first = [await cached.post(path, json=body) for path, body in requests]
        again = [await cached.post(path, json=body) for path, body in requests]
        metrics = await _metrics(cached)
    assert all(r.status_code == 200 for r in without + first + again), [r.text for r in without]
    assert [r.content for r in without] == [r.content for r in first] == [r.content for r in again]
    assert (
        _metric(metrics, "bertserve_cache_rows_total", model="tiny-emb", result="hit") == 4
    )  # the /v1 text was a hit the first time too
    assert _metric(metrics, "bertserve_cache_rows_total", model="tiny-emb", result="miss") == 2
    assert _metric(metrics, "bertserve_cache_bytes") > 0


async def test_hits_never_reach_the_batcher_and_truncation_is_part_of_the_key(make_client: Client) -> None:
    async with make_client(cache_bytes=CACHE) as c:
        await c.post("/embed", json={"inputs": "word " * 300})  # truncated to the max length
        batches = _metric(await _metrics(c), "bertserve_batch_size_count", model="tiny-emb")
        await c.post("/embed", json={"inputs": "word " * 300})
        await c.post("/embed", json={"inputs": "word " * 400})  # the same ids once truncated
        metrics = await _metrics(c)
        assert _metric(metrics, "bertserve_batch_size_count", model="tiny-emb") == batches
        assert _metric(metrics, "bertserve_cache_rows_total", model="tiny-emb", result="hit") == 2
        r = await c.post("/embed", json={"inputs": "word " * 300, "truncate": False})
        assert r.status_code == 422  # refused before any lookup: the cache changes no answer


async def test_identical_rows_queued_at_once_run_once(make_client: Client) -> None:
    async with make_client(cache_bytes=CACHE) as c:
        served = c.app.state.bertserve.models["tiny-clf"]  # type: ignore[attr-defined]
        release = hold_runtime(served)  # hold the runtime: everything queues
        busy = asyncio.ensure_future(c.post("/classify", json={"inputs": "first"}))
        await until_async(lambda: served.batcher.busy == 1)
        same = [asyncio.ensure_future(c.post("/classify", json={"inputs": ["the same text", "the same text"]}))]
        same += [asyncio.ensure_future(c.post("/classify", json={"inputs": "the same text"})) for _ in range(7)]
        # The first request's row, then one per request (a row repeated within a request is
        # looked up once).
        await until_async(lambda: _looked_up(c, 1 + 8), what="all nine requests' lookups")
        queued = served.batcher.queued
        release.set()
        answers = [await r for r in same]
        await busy
        metrics = await _metrics(c)
    assert queued == 1  # nine rows asked, one queued
    assert all(r.status_code == 200 for r in answers)
    assert len({str(r.json()["predictions"][0]) for r in answers}) == 1
    assert _metric(metrics, "bertserve_cache_rows_total", model="tiny-clf", result="shared") == 7
    assert _metric(metrics, "bertserve_cache_rows_total", model="tiny-clf", result="miss") == 2  # first, same


async def test_a_shared_row_survives_the_request_that_queued_it_leaving(make_client: Client) -> None:
    async with make_client(cache_bytes=CACHE) as c:
        served = c.app.state.bertserve.models["tiny-clf"]  # type: ignore[attr-defined]
        release = hold_runtime(served)
        owner = asyncio.ensure_future(served.run(_ids(served, "left early"), _later(60)))
        await until_async(lambda: served._inflight)
        sharer = asyncio.ensure_future(served.run(_ids(served, "left early"), _later(60)))
        await until_async(lambda: _looked_up(c, 2), what="the sharer's lookup")
        owner.cancel()  # its client went away: its item is dropped
        await until_async(owner.done)
        release.set()
        rows = await asyncio.wait_for(sharer, 10)
    assert len(rows) == 1 and rows[0].shape == (3,)


def _ids(served, text: str):  # type: ignore[no-untyped-def]
    return served.model.encoder.encode([text], True)


def _later(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds
