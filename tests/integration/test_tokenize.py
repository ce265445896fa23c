"""POST /tokenize: the tokens a model is fed, counted the same as the model routes' usage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Client

TEXTS = ["Hello wörld, supercalifragilistic!", "短い日本語の文です。", "word " * 300]


async def test_tokens_and_offsets(client: httpx.AsyncClient) -> None:
    r = await client.post("/tokenize", json={"inputs": TEXTS[0]})
    assert r.status_code == 200, r.text
    assert r.headers["x-model"] == "tiny-emb"  # the embedding model's tokenizer by default
    (tokens,) = r.json()
    assert tokens[0] == {"id": 101, "text": "[CLS]", "special": True, "start": 0, "stop": 0}
    assert tokens[-1]["text"] == "[SEP]" and tokens[-1]["special"]
    for t in tokens[1:-1]:
        assert not t["special"] and TEXTS[0][t["start"] : t["stop"]] == t["text"]
    assert [t["text"] for t in tokens[4:8]] == ["super", "cal", "if", "rag"]
    bare = (await client.post("/tokenize", json={"inputs": TEXTS[0], "add_special_tokens": False})).json()[0]
    assert bare == tokens[1:-1]


@pytest.mark.parametrize("route", ["/embed", "/classify"])
async def test_counts_match_usage(client: httpx.AsyncClient, route: str) -> None:
    model = "tiny-emb" if route == "/embed" else "tiny-clf"
    for truncate in (True, False):
        texts = TEXTS if truncate else TEXTS[:2]
        usage = (await client.post(route, json={"inputs": texts, "truncate": truncate})).json()["usage"]
        rows = (await client.post("/tokenize", json={"inputs": texts, "model": model, "truncate": truncate})).json()
        assert sum(len(row) for row in rows) == usage["input_tokens"]
    rows = (await client.post("/tokenize", json={"inputs": TEXTS[2], "truncate": False})).json()
    assert len(rows[0]) == 302  # not cut: 300 words and two special tokens


async def test_pairs_where_the_model_takes_them(make_client: Client, tiny_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo / "tiny-clf", repo / "tiny-clf")
    manifest = json.loads((repo / "tiny-clf" / "manifest.json").read_text())
    (repo / "tiny-clf" / "manifest.json").write_text(json.dumps({**manifest, "pairs": True}))
    pairs = [["what is a cat?", "a cat is a small animal " * 40], ["a", "b"]]
    async with make_client(models=repo) as c:
        rows = (await c.post("/tokenize", json={"inputs": pairs})).json()
        usage = (await c.post("/classify", json={"inputs": pairs})).json()["usage"]
        assert sum(len(row) for row in rows) == usage["input_tokens"]
        first = rows[0]
        assert [t["text"] for t in first[:6]] == ["[CLS]", "what", "is", "a", "cat", "?"]  # the query kept whole
        assert first[8]["text"] == "cat" and first[8]["start"] == 2  # offsets into the second text
    async with make_client() as c:
        r = await c.post("/tokenize", json={"inputs": pairs})
        assert r.status_code == 422 and "not pairs" in r.json()["error"]["message"]
