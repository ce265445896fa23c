"""How well /rerank ranks out of the box: for a query taken from an IMDB review (its first
sentence), is the rest of that review ranked above the rest of other reviews? A top-1 rate
and MRR over the sample; tests/e2e/test_rerank.py holds the default models to a floor.

The reviews are ones no served model was trained on (the embedding model never saw IMDB;
the classifier was tuned on rotten_tomatoes).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import httpx

from service.export.data import load_reviews

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Quality:
    queries: int
    candidates: int
    top1: float
    mrr: float


def cases(count: int, candidates: int, seed: int = 7, sentences: int | None = None) -> list[tuple[str, list[str], int]]:
    """(query, passages, index of the query's own passage), from reviews of 4+ sentences."""
    rng = random.Random(seed)
    reviews = [t.replace("<br />", " ") for t, _ in load_reviews("imdb")]
    split = []
    for review in rng.sample(reviews, 4 * count):
        parts = _SENTENCE.split(review)
        if len(parts) >= 4 and len(parts[0]) >= 30:
            split.append((parts[0], " ".join(parts[1 : None if sentences is None else 1 + sentences])))
        if len(split) == count:
            break
    out = []
    for i, (query, own) in enumerate(split):
        others = [p for j, (_, p) in enumerate(split) if j != i]
        passages = [own, *rng.sample(others, candidates - 1)]
        rng.shuffle(passages)
        out.append((query, passages, passages.index(own)))
    return out


def measure(
    url: str, count: int = 200, candidates: int = 10, model: str | None = None, sentences: int | None = None
) -> Quality:
    hits, reciprocal = 0, 0.0
    with httpx.Client(base_url=url, timeout=60) as client:
        for query, passages, own in cases(count, candidates, sentences=sentences):
            body: dict[str, object] = {"query": query, "texts": passages}
            if model:
                body["model"] = model
            r = client.post("/rerank", json=body)
            r.raise_for_status()
            rank = [x["index"] for x in r.json()].index(own) + 1
            hits += rank == 1
            reciprocal += 1 / rank
    n = len(cases(count, candidates, sentences=sentences))
    return Quality(n, candidates, hits / n, reciprocal / n)
