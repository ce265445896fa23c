"""Hostile and odd input through the ASGI app: a 4xx in the envelope or a right answer,
never a 500. Access control options."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Client

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": "\xff\xfe bad utf-8"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"inputs": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        b'{"inputs": "x", "top_k": NaN}',
        b'{"inputs": "x", "top_k": Infinity}',
        b'{"inputs": 1e999}',
        b'{"inputs": ["a", null]}',
        b'{"inputs": {"text": "a"}}',
        b'"just a string"',
        b"",
    ],
)
async def test_malformed_bodies_are_422(client: httpx.AsyncClient, body: bytes) -> None:
    r = await client.post("/classify", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert set(r.json()["error"]) == {"type", "message", "param"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 5000 + b"]" * 5000, "body is JSON nested too deeply to parse"),
        (b'{"inputs": ' + b"[" * 5000 + b'"a"' + b"]" * 5000 + b"}", "body is JSON nested too deeply to parse"),
        (b'{"inputs": "\xff\xfe bad utf-8"}', "body is not valid UTF-8 JSON"),
    ],
)
async def test_an_undecodable_body_says_why(client: httpx.AsyncClient, body: bytes, message: str) -> None:
    for route in ("/classify", "/embed", "/v1/embeddings"):
        r = await client.post(route, content=body, headers=JSON)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == {"type": "invalid_request", "message": message, "param": "body"}


@pytest.mark.parametrize(
    "text",
    [
        "control \x00\x01\x07\x1b[31m chars \u200b\u202e reversed",
        "mixed scripts: Ελληνικά, русский, العربية, हिन्दी, 中文, 日本語, 한국어 🙂👍🏽",
        "x" * 19_999,  # one enormous 'word': the tokenizer maps it to [UNK]
        "\U0001f600" * 5000,
        "\ud7ff\ue000\ufffd",
    ],
)
async def test_odd_text_gets_a_real_answer(client: httpx.AsyncClient, text: str) -> None:
    for route in ("/classify", "/embed"):
        r = await client.post(route, json={"inputs": [text, "plain"]})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["input_tokens"] > 0


async def test_api_keys_from_a_file_and_protected_metrics(
    make_client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    keys = tmp_path / "keys"
    keys.write_text("# team A\nfile-key-1\n\n  file-key-2  \n")
    async with make_client(api_keys="env-key", api_keys_file=keys, protect_metrics=True) as c:
        for key in ("env-key", "file-key-1", "file-key-2"):
            r = await c.post("/classify", json={"inputs": "a"}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200
        assert (
            await c.post("/classify", json={"inputs": "a"}, headers={"Authorization": "Bearer # team A"})
        ).status_code == 401
        assert (
            await c.post("/classify", json={"inputs": "a"}, headers={"Authorization": "Basic env-key"})
        ).status_code == 401
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"Authorization": "Bearer env-key"})).status_code == 200
        assert (await c.get("/health/live")).status_code == 200
        assert (await c.get("/health/ready")).status_code == 200
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "bertserve.access" in logged  # requests were logged...
    for key in ("env-key", "file-key-1", "file-key-2"):
        assert key not in logged  # ...and no key with them


async def test_cors_is_off_unless_configured(make_client: Client) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with make_client() as c:
        r = await c.post("/classify", json={"inputs": "a"}, headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers
    async with make_client(cors_origins="https://app.example") as c:
        r = await c.options("/classify", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = await c.options("/classify", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        assert r.status_code == 400 and r.headers["content-type"] == "application/json"
        assert r.json()["error"] == {"type": "bad_request", "message": "Disallowed CORS origin", "param": None}
        assert r.headers["x-request-id"]


async def test_nothing_internal_leaks_from_a_500(make_client: Client, broken_repo: Path) -> None:
    """A graph that fails at run time for some inputs (token ids past its vocabulary): the
    poison input gets a generic 500, the good input sharing its batch still gets its answer."""
    # verify_models off: it would refuse this model at start-up (tests/e2e/test_startup.py)
    async with make_client(models=broken_repo, max_wait_ms=200, verify_models=False) as c:
        import asyncio

        good, bad = await asyncio.gather(
            c.post("/classify", json={"inputs": "!"}), c.post("/classify", json={"inputs": "hello"})
        )
        assert good.status_code == 200
        assert bad.status_code == 500
        err = bad.json()["error"]
        assert err["type"] == "internal_error"
        assert bad.headers["x-request-id"] in err["message"]
        for leak in ("onnxruntime", "Gather", "indices", "Traceback", "/"):
            assert leak not in err["message"]
        metrics = (await c.get("/metrics")).text
        # the shared batch failed, then "hello" alone; "!" alone succeeded
        assert 'bertserve_batch_failures_total{model="broken"} 2.0' in metrics
        assert 'bertserve_batch_size_count{model="broken"} 1.0' in metrics
        assert 'bertserve_batch_size_sum{model="broken"} 1.0' in metrics
