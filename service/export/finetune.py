"""Fine-tune a BERT-family encoder for sequence classification on labelled text.

Small and deterministic on purpose: fixed seed, fixed split, one pass, dynamic padding per
batch and length-bucketed batches so two CPU cores finish an epoch in minutes.
"""

from __future__ import annotations

import random
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from service.export.data import Example
from service.export.plain import plain_output


@dataclass
class TrainConfig:
    labels: tuple[str, ...]
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    max_length: int = 64
    seed: int = 0
    # The word-embedding matrix (half of MiniLM's weights) kept as it is: a cheaper step.
    freeze_embeddings: bool = False


def split_holdout(rows: Sequence[Example], holdout: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Shuffle with a fixed seed and hold out the first `holdout` rows: training never sees them."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    return shuffled[holdout:], shuffled[:holdout]


def _batches(rows: list[Example], cfg: TrainConfig, rng: random.Random) -> list[list[Example]]:
    """Bucket by length (less padding), then shuffle the batches (no order bias)."""
    ordered = sorted(rows, key=lambda r: len(r[0]))
    batches = [ordered[i : i + cfg.batch_size] for i in range(0, len(ordered), cfg.batch_size)]
    rng.shuffle(batches)
    return batches


def finetune(base: Path, out: Path, train: list[Example], cfg: TrainConfig) -> float:
    """Train and save a checkpoint (weights + tokenizer) to `out`; returns training seconds."""
    with plain_output(lambda line: print(line, file=sys.stderr, flush=True), "finetune: transformers: "):
        return _train(base, out, train, cfg)


def _train(base: Path, out: Path, train: list[Example], cfg: TrainConfig) -> float:
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tokenizer, model = load_for_training(AutoModelForSequenceClassification, base, cfg.labels)
    steps = cfg.epochs * ((len(train) + cfg.batch_size - 1) // cfg.batch_size)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=cfg.learning_rate, weight_decay=0.01)

    def loss_of(batch: list[Example]) -> torch.Tensor:
        enc = tokenizer(
            [t for t, _ in batch], padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt"
        )
        loss: torch.Tensor = model(**enc, labels=torch.tensor([y for _, y in batch])).loss
        return loss

    return train_and_save(model, tokenizer, optimizer, cfg, steps, lambda: _batches(train, cfg, rng), loss_of, out)


def load_for_training(auto_class: Any, base: Path, labels: Sequence[str]) -> tuple[Any, Any]:
    """The base checkpoint's tokenizer, and its encoder under a new head of `auto_class`
    (e.g. AutoModelForSequenceClassification) with `labels` in index order."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "newly initialized" head weights: expected here
        model = auto_class.from_pretrained(
            str(base),
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            attn_implementation="eager",
        )
    return tokenizer, model


B = TypeVar("B")


def train_and_save(
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    steps: int,
    batches: Callable[[], Iterable[B]],
    loss_of: Callable[[B], torch.Tensor],
    out: Path,
) -> float:
    """The loop both fine-tunes share: linear warm-up then decay, gradients clipped at 1.0,
    progress every 20 steps, `batches()` drawn anew each epoch; then the checkpoint (weights
    and tokenizer) saved to `out`. Returns the training seconds."""
    from transformers import get_linear_schedule_with_warmup

    schedule = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(steps * cfg.warmup_fraction), steps
    )
    model.train()
    started = time.perf_counter()
    step = 0
    for epoch in range(cfg.epochs):
        for batch in batches():
            loss = loss_of(batch)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if step % 20 == 0 or step == steps:
                elapsed = time.perf_counter() - started
                print(
                    f"finetune: epoch {epoch + 1} step {step}/{steps} loss {loss.item():.3f} "
                    f"{elapsed:.0f}s elapsed, ~{elapsed / step * (steps - step):.0f}s left",
                    file=sys.stderr,
                    flush=True,
                )
    seconds = time.perf_counter() - started
    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    # safetensors writes its weights owner-only (0600): readable by all, as the other files
    # are, so the checkpoint mounted into a container serves whatever user the image runs as.
    for path in out.iterdir():
        if path.is_file():
            path.chmod(0o644)
    return seconds
