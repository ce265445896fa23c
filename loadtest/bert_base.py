"""A BERT-base-sized classifier for the benchmark, built once into `.build/` and reused.

  python -m loadtest.bert_base        # build it if missing, print the model folder

The bert-base-uncased shape (12 layers, hidden 768, 12 heads, intermediate 3072, vocab 30522,
512 positions) with random weights from a fixed seed and a 2-label head: what is measured is
the cost of a model that size, not its answers. No hub download: the tokenizer is the bundled
all-MiniLM-L6-v2's, the same uncased WordPiece vocabulary as bert-base-uncased. The graph is
made by the project's own `bertserve export --int8`, so the bench serves what a user would.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loadtest import procs

NAME = "bert-base-random"
SEED = 0
LABELS = ("negative", "positive")
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
EXPORT_FLAGS = ("--task", "classify", "--int8", "--max-length", str(MAX_LENGTH), "--name", NAME)
ROOT = procs.REPO / ".build" / "bert-base"


def _key() -> str:
    """Everything the built model depends on: a change to any of it is a new folder, and a
    folder that exists is never rebuilt (delete .build/bert-base to force it)."""
    from importlib import metadata

    versions = {pkg: metadata.version(pkg) for pkg in ("torch", "transformers", "onnxruntime")}
    recipe = {"config": CONFIG, "seed": SEED, "labels": LABELS, "flags": EXPORT_FLAGS, "versions": versions}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def models_dir() -> Path:
    """A models folder holding this one model only (what the service is started on)."""
    return ROOT / _key() / "models"


def model_dir() -> Path:
    return models_dir() / NAME


def _write_checkpoint(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from models.build import minilm_checkpoint

    torch.manual_seed(SEED)
    head: dict[str, Any] = {
        "num_labels": len(LABELS),
        "id2label": dict(enumerate(LABELS)),
        "label2id": {label: i for i, label in enumerate(LABELS)},
    }
    # Written aside and renamed, so an interrupted build never leaves a checkpoint that looks whole.
    staging = out.parent / f".{out.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    # Weights are drawn in the model's constructor, right after the seed: the same every build.
    BertForSequenceClassification(BertConfig(**CONFIG, **head)).save_pretrained(str(staging))
    AutoTokenizer.from_pretrained(str(minilm_checkpoint()), use_fast=True).save_pretrained(str(staging))
    staging.rename(out)


def ensure(log: bool = True) -> Path:
    """The model folder, built first if it is missing (about 3 minutes on 2 cores)."""
    target = model_dir()
    if (target / "manifest.json").is_file():
        return target
    started = time.perf_counter()
    checkpoint = target.parent.parent / "checkpoint"
    if not checkpoint.is_dir():
        if log:
            print(f"bert-base: random-weight checkpoint (seed {SEED}) -> {checkpoint}", file=sys.stderr, flush=True)
        _write_checkpoint(checkpoint)
    cmd = [sys.executable, "-m", "service", "export", str(checkpoint), str(target), *EXPORT_FLAGS, "--force"]
    if log:
        print(f"bert-base: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=procs.REPO, check=True)
    if log:
        print(f"bert-base: built in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    return target


if __name__ == "__main__":
    print(ensure())
