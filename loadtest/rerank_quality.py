"""How well /rerank ranks out of the box: for a query taken from an IMDB review (its first
sentence), is the rest of that review ranked above the rest of other reviews?

    python -m loadtest.rerank_quality --url http://127.0.0.1:8000 [--queries 200]

Prints top-1 rate and MRR over the sample. The reviews are ones no served model was
trained on (the embedding model never saw IMDB; the classifier was tuned on rotten_tomatoes).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--model")
    parser.add_argument("--sentences", type=int, help="sentences after the query that make its passage (all)")
    args = parser.parse_args()
    q = measure(args.url, args.queries, args.candidates, args.model, args.sentences)
    print(f"{q.queries} queries x {q.candidates} candidates: top-1 {q.top1:.3f}, MRR {q.mrr:.3f}")


if __name__ == "__main__":
    main()
