"""A BERT-base-sized classifier for the benchmark (loadtest/random_bert.py), built once.

  python -m loadtest.bert_base        # build it if missing, print the model folder

The bert-base-uncased shape (12 layers, hidden 768, 12 heads, intermediate 3072, vocab 30522,
512 positions) with random weights from a fixed seed, exported with `--int8`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.random_bert import RandomBert

NAME = "bert-base-random"
# The bert-base-uncased configuration, as its config.json on the hub gives it.
CONFIG: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
}
# Served inputs are cut at 256 tokens, as the default classifier (minilm-sentiment) does, so
# the two are compared on the same work per request; the positions table stays 512.
MAX_LENGTH = 256
MODEL = RandomBert(
    NAME, CONFIG, ("--task", "classify", "--int8", "--max-length", str(MAX_LENGTH), "--name", NAME), "bert-base"
)


def models_dir() -> Path:
    return MODEL.models_dir()


def model_dir() -> Path:
    return MODEL.model_dir()


def ensure(log: bool = True) -> Path:
    """The model folder, built first if it is missing (about 3 minutes on 2 cores)."""
    return MODEL.ensure(log)


if __name__ == "__main__":
    print(ensure())
