"""Reranking over real HTTP with the default models: out of the box (the embedding model,
by cosine), measured on real reviews, and the official Cohere client unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.procs import DEFAULT_MODELS, Server
from tests.rerank_quality import measure

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(DEFAULT_MODELS) as srv:
        yield srv


def test_own_passage_ranks_first_in_a_clear_majority(server: Server) -> None:
    quality = measure(server.url, count=40, candidates=10)
    assert quality.queries == 40
    # Chance is 0.1 top-1 and ~0.29 MRR with 10 candidates.
    assert quality.top1 > 0.5, quality
    assert quality.mrr >= 0.65, quality


def test_cohere_client_works_unchanged(server: Server) -> None:
    import cohere

    client = cohere.ClientV2(api_key="unused", base_url=server.url)
    docs = [
        "The stock market fell sharply on Monday.",
        "A tense, beautifully acted thriller that keeps you guessing.",
        "Preheat the oven to 200 degrees.",
    ]
    result = client.rerank(model="all-minilm-l6-v2", query="a gripping suspense film", documents=docs, top_n=2)
    assert [r.index for r in result.results] == [1, result.results[1].index]
    assert len(result.results) == 2
    assert result.results[0].relevance_score > result.results[1].relevance_score
    assert result.meta is not None and result.meta.tokens is not None and result.meta.tokens.input_tokens > 0
