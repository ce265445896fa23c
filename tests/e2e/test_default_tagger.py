"""The default tagger (models/minilm-ner) over real HTTP: obvious entities come back with
their types and exact character spans, with the served variant; and the answers on real
review sentences, by default and with each aggregation named, are what transformers'
token-classification pipeline gives from the served graph's own logits."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
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


# The sentences of the reviews the tagger never saw in training (models/build.py: IMDB
# shuffled with NER_SEED 11, the first NER_HELDOUT_REVIEWS 100 held out), and a few names
# that the tokenizer cuts into sub-words.
HELD_OUT_SEED, HELD_OUT_REVIEWS, REVIEW_SENTENCES = 11, 100, 60
NAMES = [
    "Tom Hanks met Meg Ryan",
    "Robert Zemeckis and Quentin Tarantino admired Stanley Kubrick's films.",
    "John Cassavetes shot it in Los Angeles in 1974, with Gena Rowlands.",
]


def _review_sentences() -> list[str]:
    from service.export.data import load_reviews
    from service.export.ner_data import review_sentences, shuffled

    reviews = shuffled([t for t, _ in load_reviews("imdb")], HELD_OUT_SEED)[:HELD_OUT_REVIEWS]
    return [s for sentences in review_sentences(reviews) for s in sentences][:REVIEW_SENTENCES]


def _judge(server: Server, strategy: str) -> Any:
    """The pipeline, its model's forward the served graph (the variant /models names) on
    onnxruntime: its tokenization and aggregation, the service's logits."""
    import onnxruntime as ort
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForTokenClassification, pipeline
    from transformers.modeling_outputs import TokenClassifierOutput

    listed = {m["name"]: m for m in httpx.get(f"{server.url}/models").json()["models"]}
    manifest = json.loads((TAGGER / "manifest.json").read_text())
    graph = TAGGER / manifest["variants"][listed["minilm-ner"]["variant"]]["file"]
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]

    class Served(BertForTokenClassification):  # type: ignore[misc]
        def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None, **_: Any) -> Any:
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            feeds = {name: given[name].numpy().astype(np.int64) for name in inputs}
            (logits,) = session.run([manifest["output"]], feeds)
            return TokenClassifierOutput(logits=torch.from_numpy(logits))

    model = Served(AutoConfig.from_pretrained(str(TAGGER))).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(TAGGER), model_max_length=manifest["max_length"])
    return pipeline(
        "token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy, device="cpu"
    )


@pytest.mark.parametrize("aggregation", [None, "simple", "first", "average", "max"])
def test_the_answers_are_the_pipelines_on_real_sentences(server: Server, aggregation: str | None) -> None:
    """One text per request, so each runs in a batch of one as the pipeline runs it (int8's
    activations are scaled per batch). No aggregation named: the pipeline's "first"."""
    judge = _judge(server, aggregation or "first")
    texts = NAMES + _review_sentences()
    entities = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for text in texts:
            r = _tag(server, [text], **({"aggregation": aggregation} if aggregation else {}))
            assert r.status_code == 200, r.text
            (got,) = r.json()["entities"]
            want = judge(text)
            assert [(e["label"], e["start"], e["end"]) for e in got] == [
                (w["entity_group"], w["start"], w["end"]) for w in want
            ], text
            for g, w in zip(got, want, strict=True):
                assert g["score"] == pytest.approx(float(w["score"]), abs=1e-4), text
            entities += len(got)
    assert entities >= 20, "the sentences should hold entities to compare"
    if aggregation is None:
        (found,) = _tag(server, [NAMES[0]]).json()["entities"]
        assert [(e["text"], e["label"], e["start"], e["end"]) for e in found] == [
            ("Tom Hanks", "PERSON", 0, 9),
            ("Meg Ryan", "PERSON", 14, 22),
        ]
