"""Every route and option through the ASGI app, on real onnxruntime sessions of tiny models."""

from __future__ import annotations

import asyncio
import base64
import gc
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.settings import Settings
from tests import expect
from tests.integration.conftest import Client, hold_runtime, wait_ready
from tests.sync import until_async


async def test_classify_single_and_batch(client: httpx.AsyncClient) -> None:
    r = await client.post("/classify", json={"inputs": "a fine film"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny-clf"
    (preds,) = body["predictions"]
    assert sorted(p["label"] for p in preds) == ["label_0", "label_1", "label_2"]
    scores = [p["score"] for p in preds]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert body["usage"]["input_tokens"] == 5  # [CLS] a fine film [SEP]

    r = await client.post("/classify", json={"inputs": ["one", "two words", "three words here"], "top_k": 1})
    assert [len(p) for p in r.json()["predictions"]] == [1, 1, 1]


async def test_classify_functions(client: httpx.AsyncClient) -> None:
    raw = (await client.post("/classify", json={"inputs": "x y", "function": "none"})).json()["predictions"][0]
    sig = (await client.post("/classify", json={"inputs": "x y", "function": "sigmoid"})).json()["predictions"][0]
    soft = (await client.post("/classify", json={"inputs": "x y"})).json()["predictions"][0]
    logits = {p["label"]: p["score"] for p in raw}
    for p in sig:
        assert p["score"] == pytest.approx(1 / (1 + np.exp(-logits[p["label"]])), rel=1e-5)
    z = np.exp(np.array(list(logits.values())) - max(logits.values()))
    expected = dict(zip(logits, z / z.sum(), strict=True))
    for p in soft:
        assert p["score"] == pytest.approx(expected[p["label"]], rel=1e-5)


async def test_same_text_same_answer_alone_or_in_a_padded_batch(client: httpx.AsyncClient) -> None:
    alone = (await client.post("/embed", json={"inputs": "short"})).json()["embeddings"][0]
    batch = (await client.post("/embed", json={"inputs": ["short", "a much longer input " * 5]})).json()
    assert np.allclose(alone, batch["embeddings"][0], atol=1e-5)


async def test_truncate_false_names_the_input_and_its_length(client: httpx.AsyncClient) -> None:
    long_text = "word " * 300
    assert (await client.post("/classify", json={"inputs": ["ok", long_text]})).status_code == 200
    r = await client.post("/classify", json={"inputs": ["ok", long_text], "truncate": False})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["param"] == "inputs[1]"
    assert "302 tokens" in err["message"] and "128" in err["message"]


async def test_embed_options(client: httpx.AsyncClient) -> None:
    r = await client.post("/embed", json={"inputs": ["hello", "world"]})
    body = r.json()
    vecs = np.array(body["embeddings"])
    assert body["dimensions"] == 32 and vecs.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)

    raw = np.array((await client.post("/embed", json={"inputs": ["hello"], "normalize": False})).json()["embeddings"])
    assert np.allclose(raw[0] / np.linalg.norm(raw[0]), vecs[0], atol=1e-5)

    cut = (await client.post("/embed", json={"inputs": "hello", "dimensions": 8})).json()
    assert cut["dimensions"] == 8
    assert np.allclose(np.array(cut["embeddings"][0]), raw[0][:8] / np.linalg.norm(raw[0][:8]), atol=1e-5)

    b64 = (await client.post("/embed", json={"inputs": ["hello", "world"], "encoding_format": "base64"})).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in b64["embeddings"]])
    assert np.allclose(decoded, vecs, atol=1e-6)

    r = await client.post("/embed", json={"inputs": "hello", "dimensions": 33})
    assert r.status_code == 422 and r.json()["error"]["param"] == "dimensions"


async def test_openai_route(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"input": ["a", "b"], "model": "tiny-emb"})
    body = r.json()
    assert body["object"] == "list" and body["model"] == "tiny-emb"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    r = await client.post("/v1/embeddings", json={"input": [], "model": "tiny-emb"})
    assert r.status_code == 422 and r.json()["error"]["message"] == "input is empty: send at least one text"
    r = await client.post("/v1/embeddings", json={"input": [[1, 2, 3]], "model": "tiny-emb"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "input"
    r = await client.post("/v1/embeddings", json={"input": "a", "model": "text-embedding-3-small"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"


async def test_models_health_metrics(client: httpx.AsyncClient, tiny_repo: Path) -> None:
    models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    for name in ("tiny-clf", "tiny-emb"):
        expect.check_variant(models[name], tiny_repo / name)
        assert models[name]["provider"] == expect.provider()
    assert models["tiny-clf"]["labels"] == ["label_0", "label_1", "label_2"]
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    assert (await client.get("/health/ready")).status_code == 200
    await client.post("/classify", json={"inputs": "x"})
    text = (await client.get("/metrics")).text
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    for name in (
        "bertserve_requests_total",
        "bertserve_request_duration_seconds_count",
        "bertserve_queue_wait_seconds_count",
        "bertserve_tokenize_seconds_count",
        "bertserve_inference_seconds_count",
        "bertserve_batch_size_count",
        "bertserve_batch_tokens_count",
        "bertserve_queue_depth",
        "bertserve_model_info",
        "bertserve_ready",
    ):
        assert name in samples, f"no sample of {name}"
    assert 'bertserve_requests_total{model="tiny-clf",route="/classify",status="200"} 1.0' in text
    assert 'bertserve_batch_size_count{model="tiny-clf"} 1.0' in text
    assert "bertserve_ready 1.0" in text


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"inputs": []}, 422, "inputs"),
        ({"inputs": ""}, 422, "inputs"),
        ({"inputs": ["ok", " \n\t"]}, 422, "inputs[1]"),
        ({"inputs": 5}, 422, "inputs"),
        ({"inputs": ["a", 3]}, 422, "inputs[1]"),
        ({"inputs": "a", "colour": "red"}, 422, "colour"),
        ({"inputs": "a", "top_k": 0}, 422, "top_k"),
        ({"inputs": "a", "function": "relu"}, 422, "function"),
        ({"inputs": ["a"] * 65}, 422, "inputs"),
        ({"inputs": "a" * 20_001}, 422, "inputs"),
        ({"inputs": "a", "model": "nope"}, 404, "model"),
        ({"inputs": "a", "model": "tiny-emb"}, 404, "model"),
    ],
)
async def test_bad_requests_get_the_envelope(
    client: httpx.AsyncClient, body: dict[str, object], status: int, param: str
) -> None:
    r = await client.post("/classify", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"type", "message", "param"}
    assert err["param"] == param
    assert err["message"]


async def test_malformed_json_and_wrong_content_type(client: httpx.AsyncClient) -> None:
    r = await client.post("/classify", content=b'{"inputs": "x"', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["message"] == "body is not valid JSON"
    r = await client.post("/classify", content=b'{"inputs": "x"}', headers={"content-type": "text/plain"})
    assert r.status_code == 422 and "Content-Type: application/json" in r.json()["error"]["message"]


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = await client.get("/classify")
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"


async def test_body_over_the_limit_is_413(make_client: Client) -> None:
    async with make_client(max_body_bytes=1000) as c:
        r = await c.post("/classify", json={"inputs": "a" * 2000})
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"

        async def chunks():  # no content-length: counted while reading
            for _ in range(10):
                yield b"a" * 200

        r = await c.post("/classify", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


@asynccontextmanager
async def _full_queue(c: httpx.AsyncClient, headers: dict[str, str] | None = None) -> AsyncIterator[None]:
    """tiny-clf's queue (2 items) full: the runtime's one thread is held, the first request's
    batch waits on it and the next request fills the queue. Both are answered 200 after."""
    served = c.app.state.bertserve.models["tiny-clf"]  # type: ignore[attr-defined]
    release = hold_runtime(served)
    running = asyncio.ensure_future(c.post("/classify", json={"inputs": ["a", "b"]}, headers=headers))
    await until_async(lambda: served.batcher.queued == 0 and served.batcher.busy == 1)
    queued = asyncio.ensure_future(c.post("/classify", json={"inputs": ["c", "d"]}, headers=headers))
    await until_async(lambda: served.batcher.queued == 2)
    try:
        yield
    finally:
        release.set()
        assert (await running).status_code == 200 and (await queued).status_code == 200


async def test_queue_full_is_429_with_retry_after(make_client: Client) -> None:
    async with make_client(max_queue_items=2) as c:
        async with _full_queue(c):
            r = await c.post("/classify", json={"inputs": "e"})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "overloaded"
        assert "(BERTSERVE_MAX_QUEUE_ITEMS)" in r.json()["error"]["message"]
        assert r.headers["x-request-id"]
        metrics = (await c.get("/metrics")).text
        assert 'bertserve_rejections_total{model="tiny-clf",priority="interactive",reason="overloaded"} 1.0' in metrics
        assert 'bertserve_requests_total{model="",route="/classify",status="429"} 1.0' in metrics


async def test_full_queue_refuses_before_the_body_is_read(make_client: Client) -> None:
    """The fast 429: with no room in any classify queue, even a body that would be a 422 is
    refused at once; other routes, and the checks that come first (API key), are untouched."""
    async with make_client(max_queue_items=2, api_keys="k1") as c:
        key = {"Authorization": "Bearer k1"}
        async with _full_queue(c, key):
            bad = await c.post("/classify", content=b"{not json", headers=key)
            alias_bad = await c.post("/classify", json={"inputs": []}, headers=key)
            anonymous = await c.post("/classify", json={"inputs": "e"})
            other_route = await c.post("/embed", json={"inputs": "e"}, headers=key)
        assert bad.status_code == 429 and bad.json()["error"]["type"] == "overloaded"
        assert bad.json()["error"]["message"] == "every classify queue is full (BERTSERVE_MAX_QUEUE_ITEMS): retry later"
        assert alias_bad.status_code == 429
        assert anonymous.status_code == 401
        assert other_route.status_code == 200
        after = await c.post("/classify", content=b"{not json", headers=key)
        assert after.status_code == 422  # room again: the body is read and judged


async def test_more_inputs_than_the_queue_holds_is_422_not_429(make_client: Client) -> None:
    """No retry could ever succeed, so it is not a 429 with Retry-After."""
    async with make_client(max_queue_items=2) as c:
        r = await c.post("/classify", json={"inputs": ["a", "b", "c"]})
        assert r.status_code == 422 and "retry-after" not in r.headers
        assert r.json()["error"]["param"] == "inputs"
        assert "whole queue of 2 (BERTSERVE_MAX_QUEUE_ITEMS)" in r.json()["error"]["message"]


async def test_deadline_is_504_and_header_validated(client: httpx.AsyncClient) -> None:
    r = await client.post("/classify", json={"inputs": "a"}, headers={"X-Request-Timeout": "0.000001"})
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"
    assert "(BERTSERVE_REQUEST_TIMEOUT_S, or X-Request-Timeout when lower)" in r.json()["error"]["message"]
    r = await client.post("/classify", json={"inputs": "a"}, headers={"X-Request-Timeout": "nan"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "x-request-timeout"


async def test_draining_is_503(client: httpx.AsyncClient) -> None:
    client.app.state.bertserve.start_draining()  # type: ignore[attr-defined]
    r = await client.post("/classify", json={"inputs": "a"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable"
    assert "draining" in r.json()["error"]["message"]
    assert (await client.get("/health/ready")).status_code == 503
    assert (await client.get("/health/live")).status_code == 200


async def test_api_keys(make_client: Client) -> None:
    async with make_client(api_keys="k1,k2") as c:
        assert (await c.post("/classify", json={"inputs": "a"})).status_code == 401
        r = await c.post("/classify", json={"inputs": "a"}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        assert r.headers["www-authenticate"] == 'Bearer realm="bertserve"'
        assert (await c.get("/models")).status_code == 401  # keys guard the model list too
        r = await c.post("/classify", json={"inputs": "a"}, headers={"Authorization": "Bearer k2"})
        assert r.status_code == 200
        assert (await c.get("/health/ready")).status_code == 200
        assert (await c.get("/metrics")).status_code == 200


async def test_concurrent_requests_share_batches(client: httpx.AsyncClient) -> None:
    texts = [f"request number {i} " * (1 + i % 4) for i in range(48)]
    results = await asyncio.gather(*(client.post("/classify", json={"inputs": t}) for t in texts))
    assert all(r.status_code == 200 for r in results)
    metrics = (await client.get("/metrics")).text
    count = float(re.search(r'bertserve_batch_size_count\{model="tiny-clf"\} (\S+)', metrics).group(1))
    singles = float(re.search(r'bertserve_batch_size_bucket\{le="1.0",model="tiny-clf"\} (\S+)', metrics).group(1))
    assert count < 48, "48 concurrent requests should have run in fewer than 48 batches"
    assert singles < count, "at least one batch should hold more than one request"


async def test_io_binding_gives_the_same_answers(client: httpx.AsyncClient, make_client: Client) -> None:
    """IO binding is the CUDA default; on CPU it can be forced, which runs the same code path."""
    texts = {"inputs": ["io binding", "a second, longer input for padding"]}
    plain = (await client.post("/embed", json=texts)).json()["embeddings"]
    async with make_client(io_binding=True) as c:
        bound = (await c.post("/embed", json=texts)).json()["embeddings"]
    assert np.allclose(plain, bound, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"inputs": ["a"] * 65, "model": "nope"}, 422, "inputs"),  # limits come before the model
        ({"inputs": "a", "model": "nope"}, 404, "model"),
    ],
)
@pytest.mark.parametrize("route", ["/classify", "/embed", "/v1/embeddings"])
async def test_same_bad_request_same_answer_on_every_route(
    client: httpx.AsyncClient, route: str, body: dict[str, object], status: int, param: str
) -> None:
    if route == "/v1/embeddings":
        body = {"input": body["inputs"], "model": body["model"]}
        param = "input" if param == "inputs" else param
    r = await client.post(route, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize("route", ["/classify", "/embed"])
async def test_admission_comes_before_the_model(client: httpx.AsyncClient, route: str) -> None:
    client.app.state.bertserve.start_draining()  # type: ignore[attr-defined]
    r = await client.post(route, json={"inputs": "a", "model": "nope"})
    assert r.status_code == 503


async def test_empty_inputs_say_so(client: httpx.AsyncClient) -> None:
    r = await client.post("/classify", json={"inputs": []})
    assert r.json()["error"]["message"] == "inputs is empty: send at least one text"
    r = await client.post("/embed", json={"inputs": ["ok", " "]})
    assert r.json()["error"] == {
        "type": "invalid_request",
        "message": "inputs[1] is empty: send a text with at least one non-blank character",
        "param": "inputs[1]",
    }


async def test_truncate_false_names_the_single_input(client: httpx.AsyncClient) -> None:
    r = await client.post("/embed", json={"inputs": "word " * 300, "truncate": False})
    assert r.status_code == 422 and r.json()["error"]["param"] == "inputs"


async def test_ready_is_503_while_the_models_load(tiny_repo: Path) -> None:
    """The lifespan returns at once; the models load in the background."""
    app = create_app(Settings(models=tiny_repo))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            first = await c.get("/health/ready")
            refused = await c.post("/classify", json={"inputs": "a"})
            assert (await c.get("/health/live")).status_code == 200
            await wait_ready(c)
    assert first.status_code == 503 and "loading" in first.json()["error"]["message"]
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "unavailable"


async def test_docs_are_served_from_local_assets(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    script = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert (await client.get("/docs/assets/swagger-ui.css")).status_code == 200
    index = (await client.get("/")).json()
    assert index["docs"] == "/docs" and index["openapi"] == "/openapi.json"


async def test_base64_saving_is_what_the_readme_says(client: httpx.AsyncClient) -> None:
    """The README quotes the size ratio of float and base64 bodies; measured here on the tiny
    model's vectors, which serialise like any other float32 vectors of the same width."""
    texts = {"inputs": [f"sentence number {i}" for i in range(16)]}
    as_float = await client.post("/embed", json=texts)
    as_base64 = await client.post("/embed", json={**texts, "encoding_format": "base64"})
    ratio = len(as_float.content) / len(as_base64.content)
    readme = Path(__file__).resolve().parents[2] / "README.md"
    quoted = float(re.search(r"about ([0-9.]+)x smaller on the wire", readme.read_text()).group(1))
    assert abs(ratio - quoted) < 0.25, f"measured {ratio:.2f}x, README says {quoted}x"


async def test_timing_headers(client: httpx.AsyncClient) -> None:
    r = await client.post("/embed", json={"inputs": ["timing", "headers for a batch"]})
    times = {k: float(r.headers[f"x-{k}-time"]) for k in ("total", "tokenization", "queue", "inference")}
    assert times["inference"] > 0 and times["tokenization"] > 0 and times["queue"] >= 0
    # Queue wait and runtime can overlap (a second item waits while the first one's batch
    # runs), so each alone is within the total, not necessarily their sum.
    assert times["total"] >= max(times["inference"], times["queue"], times["tokenization"])
    health = await client.get("/health/live")  # no model work: only the total
    assert "x-total-time" in health.headers and "x-inference-time" not in health.headers


def test_timing_headers_of_multi_batch_requests_on_uvloop(make_client: Client) -> None:
    """On the loop the server runs (uvloop), a request whose items ride in several batches,
    side by side on two sessions: its inference time is within its total, and the queue
    wait carries fractions of a millisecond (uvloop's own clock counts whole ones)."""
    import uvloop

    async def headers() -> list[httpx.Headers]:
        async with make_client(instances=2, max_batch_size=2, fast_lane=False) as c:
            texts = [f"text number {i} " * (i + 1) for i in range(8)]
            answers = [await c.post("/embed", json={"inputs": texts}) for _ in range(5)]
            assert all(r.status_code == 200 for r in answers)
            return [r.headers for r in answers]

    times = [{k: float(h[f"x-{k}-time"]) for k in ("total", "queue", "inference")} for h in uvloop.run(headers())]
    for t in times:
        assert 0 < t["inference"] <= t["total"] and t["queue"] <= t["total"], t
    assert any(f"{t['queue']:.3f}"[-3:] != "000" for t in times), times


async def test_what_start_up_loaded_is_kept_out_of_the_collector(make_client: Client) -> None:
    """Once ready, the objects loaded so far are frozen, so a full collection under load does
    not walk them (those walks were the tail of the latency).

    Any app started earlier in the same process froze what existed then: unfrozen first, so
    what is frozen below is this app's doing, its served models among it."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with make_client() as c:
        served = c.app.state.bertserve.models["tiny-clf"]  # type: ignore[attr-defined]
        assert gc.get_freeze_count() > 1000
        # Frozen objects are in the permanent generation, which get_objects() does not list.
        assert not any(o is served for o in gc.get_objects())
