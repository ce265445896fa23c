"""The default tagger (models/minilm-ner) over real HTTP: obvious entities come back with
their types and exact character spans, with the served variant (int8 on the CPU)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests import expect
from tests.e2e.procs import DEFAULT_MODELS, Server

pytestmark = pytest.mark.e2e

TAGGER = DEFAULT_MODELS / "minilm-ner"
TYPES = ["PERSON", "NORP", "GPE", "DATE", "CARDINAL", "ORDINAL"]

# Each text with every entity the tagger must find in it, as (text, type).
CASES = [
    (
        "Tom Hanks starred in a film shot in Paris in 1994.",
        {("Tom Hanks", "PERSON"), ("Paris", "GPE"), ("1994", "DATE")},
    ),
    (
        "Meryl Streep and Robert De Niro were both born in New York.",
        {("Meryl Streep", "PERSON"), ("Robert De Niro", "PERSON"), ("New York", "GPE")},
    ),
    (
        "The French director made three films in 1968.",
        {("French", "NORP"), ("three", "CARDINAL"), ("1968", "DATE")},
    ),
    (
        "It was the first film Steven Spielberg made in London.",
        {("first", "ORDINAL"), ("Steven Spielberg", "PERSON"), ("London", "GPE")},
    ),
]
NOTHING = "The plot was dull and the acting was even worse."


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if not (TAGGER / "manifest.json").is_file():
        pytest.fail("default models missing: run `make models` first")
    with Server(DEFAULT_MODELS) as srv:
        yield srv


def _tag(server: Server, texts: list[str], **extra: object) -> httpx.Response:
    return httpx.post(f"{server.url}/classify/tokens", json={"inputs": texts, **extra}, timeout=30)


def test_tagger_is_listed_with_its_tags(server: Server) -> None:
    models = {m["name"]: m for m in httpx.get(f"{server.url}/models").json()["models"]}
    tagger = models["minilm-ner"]
    assert tagger["task"] == "entities"
    assert tagger["labels"][0] == "O"
    assert {label.split("-", 1)[1] for label in tagger["labels"][1:]} == set(TYPES)
    expect.check_variant(tagger, TAGGER)
    assert tagger["provider"] == expect.provider()


def test_obvious_entities_come_back_with_their_types_and_exact_spans(server: Server) -> None:
    texts = [text for text, _ in CASES]
    r = _tag(server, texts)  # the only token classifier served: no model named
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "minilm-ner"
    assert len(body["entities"]) == len(CASES)
    for (text, wanted), found in zip(CASES, body["entities"], strict=True):
        for entity in found:
            assert text[entity["start"] : entity["end"]] == entity["text"], entity
            assert 0.0 < entity["score"] <= 1.0
        got = {(e["text"], e["label"]) for e in found}
        assert wanted <= got, (text, got)
        assert [e["start"] for e in found] == sorted(e["start"] for e in found)


def test_a_sentence_without_names_has_no_person_or_place(server: Server) -> None:
    (found,) = _tag(server, [NOTHING]).json()["entities"]
    assert not [e for e in found if e["label"] in ("PERSON", "GPE")], found


def test_every_aggregation_keeps_the_spans_exact(server: Server) -> None:
    text, wanted = CASES[0]
    for aggregation in ("first", "average", "max"):
        r = _tag(server, [text], model="minilm-ner", aggregation=aggregation)
        assert r.status_code == 200, r.text
        (found,) = r.json()["entities"]
        assert {(e["text"], e["label"]) for e in found} >= wanted, (aggregation, found)
        assert all(text[e["start"] : e["end"]] == e["text"] for e in found)


def test_a_long_text_is_tagged_whole_with_a_stride(server: Server) -> None:
    filler = "The film goes on and on without anything happening at all. " * 40
    text = filler + CASES[0][0]
    cut = _tag(server, [text]).json()
    assert cut["covered"][0] < len(text)  # the first window stops before the names
    # Word-level aggregation: what is checked is that the stride tags the end of the document
    # with exact offsets. Under "simple" the tagger, trained on sentences of up to 64 tokens,
    # leaves the "##s" of "Hanks" out behind a few hundred tokens of filler, with or without
    # a stride ("Tom Hank"): a sub-word decision of the model, not of the windows.
    whole = _tag(server, [text], stride=32, aggregation="first").json()
    assert whole["covered"] == [len(text)]
    found = {(e["text"], e["label"], e["start"]) for e in whole["entities"][0]}
    assert ("Tom Hanks", "PERSON", len(filler)) in found
