"""A truncated input is visible in the answer: /classify and /embed say, per input, whether
it was cut to the model's max length (128 tokens for the tiny models) and how many of its
characters the model read; OpenAI's /v1/embeddings keeps its exact shape."""

from __future__ import annotations

import httpx
import numpy as np

LONG = "word " * 300  # 302 tokens with [CLS] and [SEP]
SHORT = "a short text  "


async def test_classify_and_embed_say_what_was_read(client: httpx.AsyncClient) -> None:
    for route in ("/classify", "/embed"):
        body = (await client.post(route, json={"inputs": [SHORT, LONG]})).json()
        assert body["truncated"] == [False, True], route
        read = body["covered"][1]
        assert body["covered"][0] == len(SHORT) and 0 < read < len(LONG)
        assert LONG[:read] == "word " * 125 + "word"  # 126 words and the two special tokens
        single = (await client.post(route, json={"inputs": LONG})).json()
        assert single["truncated"] == [True] and single["covered"] == [read]


async def test_what_was_read_is_what_the_model_answered_for(client: httpx.AsyncClient) -> None:
    body = (await client.post("/embed", json={"inputs": [LONG]})).json()
    (read,) = body["covered"]
    prefix = (await client.post("/embed", json={"inputs": [LONG[:read]]})).json()
    assert prefix["truncated"] == [False] and prefix["covered"] == [read]
    np.testing.assert_allclose(prefix["embeddings"], body["embeddings"], atol=1e-6)


async def test_openai_embeddings_keep_their_shape(client: httpx.AsyncClient) -> None:
    body = (await client.post("/v1/embeddings", json={"input": [SHORT, LONG], "model": "tiny-emb"})).json()
    assert set(body) == {"object", "data", "model", "usage"}
    assert all(set(item) == {"object", "index", "embedding"} for item in body["data"])
