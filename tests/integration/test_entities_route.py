"""POST /classify/tokens through the app, on onnxruntime, against transformers' own
token-classification pipeline on the same checkpoint (the judge of every answer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.export.exporter import ExportOptions, export_checkpoint
from tests.integration.conftest import Client
from tests.taggers import make_minilm_tagger

SENTENCES = [
    "Tom Hanks starred in a film shot in Paris in 1994.",
    "Angela Merkel met Emmanuel Macron at the Élysée Palace on 14 July.",
    "Dr. Ngozi Okonjo-Iweala leads the World Trade Organization (WTO) in Geneva!",
    "supercalifragilisticexpialidocious words, numbers like 3.14159 and 1,000,000.",
    "Zoë Saldaña flew from São Paulo to Reykjavík with Þórður.",
    "東京 and Beijing are capitals; so is Canberra.",
    "apple Apple APPLE: Steve Jobs founded it in Cupertino, California.",
    "",  # filtered out below: the schema refuses blank texts
]
LONG = "The committee in Brussels met Ursula von der Leyen again. " * 30


@pytest.fixture(scope="module")
def tagger_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tagger")
    ckpt = make_minilm_tagger(root / "ckpt", seed=3)
    export_checkpoint(ExportOptions(ckpt, root / "models" / "tagger", "entities", max_length=64), log=lambda _: None)
    return ckpt, root / "models"


@pytest.fixture
async def tagger(make_client: Client, tagger_repo: tuple[Path, Path]) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(models=tagger_repo[1]) as c:
        yield c


def _pipeline(ckpt: Path, strategy: str) -> Any:
    """The judge, windowed at the exported max length (64), as the service windows."""
    from transformers import AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(str(ckpt), model_max_length=64)
    return pipeline(
        "token-classification", model=str(ckpt), tokenizer=tokenizer, aggregation_strategy=strategy, device="cpu"
    )


def _expected(found: list[dict[str, Any]], strategy: str) -> list[tuple[str, str, int, int]]:
    key = "entity" if strategy == "none" else "entity_group"
    return [(e[key], e["word"] if strategy == "none" else "", e["start"], e["end"]) for e in found]


def _assert_pipelines(served: list[list[dict[str, Any]]], texts: list[str], ckpt: Path, strategy: str) -> None:
    judge = _pipeline(ckpt, strategy)
    for text, got in zip(texts, served, strict=True):
        want = judge(text)
        assert len(got) == len(want), (text, got, want)
        for g, w in zip(got, want, strict=True):
            assert g["label"] == (w["entity"] if strategy == "none" else w["entity_group"])
            assert (g["start"], g["end"]) == (w["start"], w["end"])
            assert g["score"] == pytest.approx(float(w["score"]), abs=1e-4)
            if strategy != "none":
                assert text[g["start"] : g["end"]] == g["text"]


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
async def test_entities_equal_the_pipeline(
    tagger: httpx.AsyncClient, tagger_repo: tuple[Path, Path], strategy: str
) -> None:
    texts = [t for t in SENTENCES if t]
    r = await tagger.post("/classify/tokens", json={"inputs": texts, "aggregation": strategy})
    assert r.status_code == 200, r.text
    _assert_pipelines(r.json()["entities"], texts, tagger_repo[0], strategy)


async def test_the_default_is_the_pipelines_first(tagger: httpx.AsyncClient, tagger_repo: tuple[Path, Path]) -> None:
    """No aggregation named: words are fused first ("first"), so no entity ends inside a
    word, where "simple" cuts some on these sentences."""
    texts = [t for t in SENTENCES if t]
    r = await tagger.post("/classify/tokens", json={"inputs": texts})
    assert r.status_code == 200, r.text
    served = r.json()["entities"]
    _assert_pipelines(served, texts, tagger_repo[0], "first")
    simple = (await tagger.post("/classify/tokens", json={"inputs": texts, "aggregation": "simple"})).json()
    assert served != simple["entities"]
    for text, found in zip(texts, served, strict=True):
        for e in found:
            for at in (e["start"], e["end"]):
                assert not _inside_a_word(text, at), (text, e)
    pairs = zip(texts, simple["entities"], strict=True)
    assert any(_inside_a_word(text, e["end"]) for text, found in pairs for e in found)


def _inside_a_word(text: str, at: int) -> bool:
    """Between two ASCII letters or digits: one WordPiece word, whatever its sub-words."""
    pair = text[max(at - 1, 0) : at + 1]
    return 0 < at < len(text) and pair.isascii() and pair.isalnum()


async def test_long_input_first_window_or_strided(tagger: httpx.AsyncClient, tagger_repo: tuple[Path, Path]) -> None:
    first = (await tagger.post("/classify/tokens", json={"inputs": LONG})).json()
    assert first["covered"][0] < len(LONG)
    assert all(e["end"] <= first["covered"][0] for e in first["entities"][0])
    whole = (await tagger.post("/classify/tokens", json={"inputs": LONG, "stride": 16})).json()
    assert whole["covered"] == [len(LONG)]
    judge = _pipeline(tagger_repo[0], "first")  # the default
    want = judge(LONG, stride=16)
    got = whole["entities"][0]
    assert [(e["label"], e["start"], e["end"]) for e in got] == [
        (w["entity_group"], w["start"], w["end"]) for w in want
    ]
    refused = await tagger.post("/classify/tokens", json={"inputs": ["ok", LONG], "truncate": False})
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "inputs[1]"


async def test_batched_equals_single(tagger: httpx.AsyncClient) -> None:
    texts = [t for t in SENTENCES if t]
    batch = (await tagger.post("/tokens", json={"inputs": texts})).json()["entities"]
    for text, got in zip(texts, batch, strict=True):
        alone = (await tagger.post("/tokens", json={"inputs": text})).json()["entities"][0]
        assert [(e["label"], e["start"], e["end"]) for e in alone] == [(e["label"], e["start"], e["end"]) for e in got]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"inputs": "x", "aggregation": "longest"}, 422, "aggregation"),
        ({"inputs": "x", "aggregation": "none", "stride": 8}, 422, "stride"),
        ({"inputs": "x", "stride": 10_000}, 422, "stride"),
        ({"inputs": "x", "model": "nope"}, 404, "model"),
    ],
)
async def test_bad_token_requests(tagger: httpx.AsyncClient, body: dict[str, object], status: int, param: str) -> None:
    r = await tagger.post("/classify/tokens", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


async def test_a_classifier_is_not_a_tagger(client: httpx.AsyncClient) -> None:
    r = await client.post("/classify/tokens", json={"inputs": "x", "model": "tiny-clf"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
