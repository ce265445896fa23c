"""Text pairs on /classify, and /rerank, /v2/rerank through the ASGI app on tiny models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.conftest import Client


@pytest.fixture(scope="module")
def pairs_repo(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny classifier, declared a pair classifier (its BERT graph takes segment ids), and
    the tiny embedding model; no cross-encoder, so /rerank falls back on cosine."""
    repo = tmp_path_factory.mktemp("pairs") / "models"
    shutil.copytree(tiny_repo / "tiny-clf", repo / "tiny-clf")
    shutil.copytree(tiny_repo / "tiny-emb", repo / "tiny-emb")
    manifest = json.loads((repo / "tiny-clf" / "manifest.json").read_text())
    (repo / "tiny-clf" / "manifest.json").write_text(json.dumps({**manifest, "pairs": True}))
    return repo


async def test_pairs_need_a_pair_model(client: httpx.AsyncClient) -> None:
    r = await client.post("/classify", json={"inputs": [["a premise", "a hypothesis"]]})
    assert r.status_code == 422 and "takes single texts, not pairs" in r.json()["error"]["message"]


async def test_pair_classification(make_client: Client, pairs_repo: Path) -> None:
    # fp32: dynamic int8 scales activations per batch, so its answers move with the batch.
    async with make_client(models=pairs_repo, variant="fp32") as c:
        pairs = [["A man is playing a guitar.", "Someone makes music."], ["short", "a much longer second text " * 3]]
        r = await c.post("/classify", json={"inputs": pairs, "function": "none"})
        assert r.status_code == 200, r.text
        together = r.json()["predictions"]
        alone = [
            (await c.post("/classify", json={"inputs": [p], "function": "none"})).json()["predictions"][0]
            for p in pairs
        ]
        for a, b in zip(together, alone, strict=True):
            assert {x["label"]: x["score"] for x in a} == pytest.approx({x["label"]: x["score"] for x in b}, abs=1e-5)
        # The pair is one input with segment ids, not the two texts run together.
        joined = (await c.post("/classify", json={"inputs": " ".join(pairs[0]), "function": "none"})).json()
        assert joined["predictions"][0] != together[0]
        assert r.json()["usage"]["input_tokens"] > joined["usage"]["input_tokens"]  # the extra [SEP]
        models = {m["name"]: m for m in (await c.get("/models")).json()["models"]}
        assert models["tiny-clf"]["pairs"] is True and models["tiny-emb"]["rerank"] == "cosine"


async def test_a_cut_pair_says_how_much_of_each_text_was_read(make_client: Client, pairs_repo: Path) -> None:
    async with make_client(models=pairs_repo) as c:
        query, passage = "a short query", "a long passage " * 100
        r = await c.post("/classify", json={"inputs": [[query, "short"], [query, passage]]})
        body = r.json()
        assert body["truncated"] == [False, True]
        assert body["covered"][0] == [len(query), len("short")]
        first, second = body["covered"][1]
        assert first == len(query) and 0 < second < len(passage)  # the second text is cut first


@pytest.mark.parametrize(
    ("inputs", "param", "words"),
    [
        ([["a", "b"], "c"], "inputs", "mixes single texts and pairs"),
        ([["a", "b", "c"]], "inputs[0]", ""),
        ([["a"]], "inputs[0]", ""),
        ([["a", " "]], "inputs[0][1]", "empty"),
    ],
)
async def test_bad_pairs(make_client: Client, pairs_repo: Path, inputs: object, param: str, words: str) -> None:
    async with make_client(models=pairs_repo) as c:
        r = await c.post("/classify", json={"inputs": inputs})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["param"] == param and words in r.json()["error"]["message"]


async def test_rerank_by_cosine_out_of_the_box(client: httpx.AsyncClient) -> None:
    query, texts = "a film about cats", ["a movie about cats", "tax law", "cats on film", "the stock market"]
    r = await client.post("/rerank", json={"query": query, "texts": texts, "return_text": True})
    assert r.status_code == 200, r.text
    assert r.headers["x-model"] == "tiny-emb (cosine)"
    ranked = r.json()
    vectors = np.array((await client.post("/embed", json={"inputs": [query, *texts]})).json()["embeddings"])
    cosine = vectors[1:] @ vectors[0]
    assert [x["index"] for x in ranked] == list(np.argsort(-cosine, kind="stable"))
    for x in ranked:
        assert x["score"] == pytest.approx(cosine[x["index"]], abs=1e-5)
        assert x["text"] == texts[x["index"]]
    top = (await client.post("/rerank", json={"query": query, "texts": texts, "top_n": 2})).json()
    assert top == [{"index": x["index"], "score": x["score"]} for x in ranked[:2]]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": "q", "texts": []}, "texts"),
        ({"query": "q", "texts": ["a"], "top_n": 0}, "top_n"),
        ({"query": "", "texts": ["a"]}, "query"),
        ({"query": "q", "texts": ["a"] * 257}, "texts"),
        ({"query": "q" * 20_001, "texts": ["a"]}, "query"),
        ({"query": "q", "texts": ["a", "b" * 20_001]}, "texts[1]"),
        ({"query": "q", "texts": ["a"], "model": "tiny-clf"}, "model"),
    ],
)
async def test_bad_rerank_requests(client: httpx.AsyncClient, body: dict[str, object], param: str) -> None:
    r = await client.post("/rerank", json=body)
    assert r.status_code in (404, 422), r.text
    assert r.json()["error"]["param"] == param


async def test_cohere_wire_format(client: httpx.AsyncClient) -> None:
    docs = ["cats", "dogs", "a film about cats"]
    r = await client.post("/v2/rerank", json={"model": "tiny-emb", "query": "cat film", "documents": docs, "top_n": 10})
    body = r.json()
    assert r.status_code == 200 and len(body["results"]) == 3  # top_n above the count: every document
    assert set(body) == {"id", "results", "meta"} and body["meta"]["tokens"]["input_tokens"] > 0
    scores = [x["relevance_score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    r = await client.post("/v2/rerank", json={"model": "rerank-v3.5", "query": "q", "documents": ["a"]})
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"


async def test_rerank_texts_share_batches_with_other_requests(client: httpx.AsyncClient) -> None:
    texts = [f"candidate passage number {i}" for i in range(20)]
    r = await client.post("/rerank", json={"query": "which passage", "texts": texts})
    assert r.status_code == 200 and len(r.json()) == 20
    metrics = (await client.get("/metrics")).text
    # 21 items (the query rides along) in fewer batches than items: they were batched.
    assert 'bertserve_batch_size_sum{model="tiny-emb"} 21.0' in metrics
