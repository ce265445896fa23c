"""Every request limit is refused in the envelope with a message that names its setting, and
the body limit fits the others: a request within the documented limits is never a 413."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx

from tests.integration.conftest import Client

JSON = {"content-type": "application/json"}


def _refusal(r: httpx.Response, status: int, setting: str) -> str:
    assert r.status_code == status, r.text
    message: str = r.json()["error"]["message"]
    assert f"({setting})" in message, message
    return message


async def test_each_request_limit_names_its_setting(make_client: Client) -> None:
    async with make_client(max_inputs=3, max_rerank_texts=2, max_input_chars=50) as c:
        r = await c.post("/classify", json={"inputs": ["a", "b", "c", "d"]})
        assert _refusal(r, 422, "BERTSERVE_MAX_INPUTS") == (
            "inputs has 4 items, over the limit of 3 (BERTSERVE_MAX_INPUTS)"
        )
        r = await c.post("/embed", json={"inputs": ["ok", "x" * 51]})
        assert _refusal(r, 422, "BERTSERVE_MAX_INPUT_CHARS") == (
            "inputs[1] has 51 characters, over the limit of 50 (BERTSERVE_MAX_INPUT_CHARS)"
        )
        r = await c.post("/rerank", json={"query": "q", "texts": ["a", "b", "c"]})
        assert _refusal(r, 422, "BERTSERVE_MAX_RERANK_TEXTS") == (
            "texts has 3 items, over the limit of 2 (BERTSERVE_MAX_RERANK_TEXTS)"
        )
        r = await c.post("/rerank", json={"query": "q" * 51, "texts": ["a"]})
        assert r.json()["error"]["param"] == "query"
        _refusal(r, 422, "BERTSERVE_MAX_INPUT_CHARS")


async def test_the_body_limit_names_its_setting(make_client: Client) -> None:
    async with make_client(max_body_bytes=1000) as c:
        r = await c.post("/classify", json={"inputs": "a" * 2000})
        assert _refusal(r, 413, "BERTSERVE_MAX_BODY_BYTES") == (
            "request body over 1000 bytes (BERTSERVE_MAX_BODY_BYTES)"
        )


async def test_a_request_at_every_limit_fits_the_default_body_limit(make_client: Client) -> None:
    """Pairs at the item and character limits fit the derived body limit; the same texts
    escaped as \\uXXXX (Python's json does it to non-ASCII text) take six times the bytes and
    meet the body limit first, as the README says."""
    async with make_client(max_inputs=4, max_rerank_texts=1, max_input_chars=2000) as c:
        body = json.dumps({"inputs": [["a" * 2000, "b" * 2000]] * 4}).encode()
        r = await c.post("/classify", content=body, headers=JSON)
        # tiny-clf takes single texts: the pairs are refused by the model, not by their size.
        assert r.status_code == 422 and "not pairs" in r.json()["error"]["message"]
        r = await c.post("/classify", content=json.dumps({"inputs": ["a" * 2000] * 4}).encode(), headers=JSON)
        assert r.status_code == 200, r.text
        escaped = json.dumps({"inputs": [["é" * 2000, "ü" * 2000]] * 4}).encode()
        r = await c.post("/classify", content=escaped, headers=JSON)
        _refusal(r, 413, "BERTSERVE_MAX_BODY_BYTES")


async def test_sixty_long_inputs_are_embedded_at_the_default_limits(client: httpx.AsyncClient) -> None:
    """60 inputs of 19,500 characters: within the documented limits (64 of 20,000), so not a 413."""
    words = "the quick brown fox jumps over the lazy dog "
    text = (words * (19_500 // len(words) + 1))[:19_500]
    r = await client.post("/embed", json={"inputs": [text] * 60})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["embeddings"]) == 60


async def test_a_slow_body_names_its_setting(make_client: Client) -> None:
    async with make_client(body_timeout_s=0.05) as c:
        never = asyncio.Event()

        async def stalled() -> AsyncIterator[bytes]:
            yield b'{"inputs": '
            await never.wait()  # the rest never comes

        r = await c.post("/classify", content=stalled(), headers=JSON)
        assert _refusal(r, 408, "BERTSERVE_BODY_TIMEOUT_S") == (
            "request body not received in time (BERTSERVE_BODY_TIMEOUT_S)"
        )
