"""Batch defaults that follow the model's shape."""

from __future__ import annotations

import json
from pathlib import Path

from service.batching.sizing import MIN_TOKENS, REFERENCE_TOKENS, batch_tokens_for, per_token_cost, read_config


def test_minilm_keeps_the_reference_budget() -> None:
    assert batch_tokens_for({"num_hidden_layers": 6, "hidden_size": 384}) == REFERENCE_TOKENS


def test_the_budget_shrinks_with_layers_times_hidden_squared() -> None:
    assert batch_tokens_for({"num_hidden_layers": 12, "hidden_size": 768}) == 1024  # BERT-base: 8x the cost
    assert batch_tokens_for({"n_layers": 6, "dim": 768}) == 2048  # DistilBERT's names
    assert batch_tokens_for({"num_hidden_layers": 24, "hidden_size": 1024}) == MIN_TOKENS  # BERT-large, floored


def test_a_smaller_model_does_not_get_more_than_the_reference() -> None:
    assert batch_tokens_for({"num_hidden_layers": 2, "hidden_size": 128}) == REFERENCE_TOKENS


def test_an_unknown_shape_keeps_the_reference(tmp_path: Path) -> None:
    assert per_token_cost({"hidden_size": "768"}) is None
    assert batch_tokens_for({}) == REFERENCE_TOKENS
    assert read_config(tmp_path) == {}
    (tmp_path / "config.json").write_text("[1, 2]")
    assert read_config(tmp_path) == {}
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 12, "hidden_size": 768}))
    assert batch_tokens_for(read_config(tmp_path)) == 1024
