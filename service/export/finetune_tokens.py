"""Fine-tune a BERT-family encoder for token classification (NER) on entity-labelled text.

The token-classification twin of `service.export.finetune`: same fixed seed, one pass,
dynamic padding and length-bucketed batches. Rows are `service.export.ner_data` rows
(text and character-offset entities); every sub-token of an entity is trained on with the
tags `align_tags` gives it, special tokens are not.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.export.finetune import TrainConfig, load_for_training, train_and_save
from service.export.ner_data import Row, align_tags
from service.export.plain import plain_output


@dataclass
class TokenTrainConfig(TrainConfig):
    # The new classification head's learning rate (default: learning_rate).
    head_learning_rate: float | None = None
    # The embeddings and the first N transformer layers kept as they are: no backward pass
    # through them, a cheaper step.
    frozen_layers: int = 0
    # bfloat16 autocast for the forward pass (weights and optimizer stay float32).
    bf16: bool = False


def finetune_tokens(base: Path, out: Path, train: Sequence[Row], cfg: TokenTrainConfig) -> float:
    """Train and save a `*ForTokenClassification` checkpoint (weights + tokenizer) to `out`,
    with `cfg.labels` as its tags (index order); returns training seconds."""
    with plain_output(lambda line: print(line, file=sys.stderr, flush=True), "finetune: transformers: "):
        return _train(base, out, train, cfg)


def encode_rows(tokenizer: Any, rows: Sequence[Row], labels: Sequence[str], max_length: int) -> list[dict[str, Any]]:
    """Each row's token ids and tag ids (cut to `max_length` tokens)."""
    tag_ids = {name: i for i, name in enumerate(labels)}
    enc = tokenizer(
        [r["text"] for r in rows],
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    out = []
    for i, row in enumerate(rows):
        special = [bool(s) for s in enc["special_tokens_mask"][i]]
        tags = align_tags(enc["offset_mapping"][i], special, row["entities"], tag_ids)
        item = {k: enc[k][i] for k in enc if k not in ("offset_mapping", "special_tokens_mask")}
        item["labels"] = tags
        out.append(item)
    return out


def _batches(items: list[dict[str, Any]], size: int, rng: random.Random) -> list[list[dict[str, Any]]]:
    """Bucket by length (less padding), then shuffle the batches (no order bias)."""
    ordered = sorted(items, key=lambda item: len(item["input_ids"]))
    batches = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    rng.shuffle(batches)
    return batches


def _collate(batch: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(item["input_ids"]) for item in batch)
    out: dict[str, torch.Tensor] = {}
    for key in batch[0]:
        fill = -100 if key == "labels" else (pad_id if key == "input_ids" else 0)
        out[key] = torch.tensor([item[key] + [fill] * (width - len(item[key])) for item in batch])
    return out


def _freeze(model: Any, cfg: TokenTrainConfig) -> None:
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if cfg.frozen_layers:
        base = model.base_model
        layers = base.encoder.layer if hasattr(base, "encoder") else base.transformer.layer
        for module in [base.embeddings, *layers[: cfg.frozen_layers]]:
            for param in module.parameters():
                param.requires_grad_(False)


def _train(base: Path, out: Path, train: Sequence[Row], cfg: TokenTrainConfig) -> float:
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tokenizer, model = load_for_training(AutoModelForTokenClassification, base, cfg.labels)
    items = encode_rows(tokenizer, train, cfg.labels, cfg.max_length)
    pad_id = int(tokenizer.pad_token_id or 0)
    steps = cfg.epochs * ((len(items) + cfg.batch_size - 1) // cfg.batch_size)
    _freeze(model, cfg)
    head = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier.") and p.requires_grad]
    groups: list[dict[str, Any]] = [
        {"params": body},
        {"params": head, "lr": cfg.head_learning_rate or cfg.learning_rate},
    ]
    optimizer = torch.optim.AdamW(
        groups,
        lr=cfg.learning_rate,
        weight_decay=0.01,
    )

    def loss_of(batch: list[dict[str, Any]]) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss: torch.Tensor = model(**_collate(batch, pad_id)).loss
        return loss

    return train_and_save(
        model, tokenizer, optimizer, cfg, steps, lambda: _batches(items, cfg.batch_size, rng), loss_of, out
    )
