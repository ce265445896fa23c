"""The sequence-classification fine-tune on a tiny checkpoint: it learns, saves a checkpoint
the exporter takes, and is deterministic (the default classifier's build relies on it)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from service.export.finetune import TrainConfig, finetune
from tests.tiny import make_checkpoint

ROWS = [("a fine film", 1), ("a dull film", 0), ("fine and warm", 1), ("dull and cold", 0)] * 16


def _logits(ckpt: Path, texts: list[str]) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    model = AutoModelForSequenceClassification.from_pretrained(str(ckpt)).eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


def test_finetune_learns_saves_and_repeats(tmp_path: Path) -> None:
    base = make_checkpoint(tmp_path / "base", "bert", head=False)
    cfg = TrainConfig(labels=("negative", "positive"), epochs=3, batch_size=8, learning_rate=1e-3)
    seconds = finetune(base, tmp_path / "a", ROWS, cfg)
    finetune(base, tmp_path / "b", ROWS, cfg)
    assert seconds > 0
    texts = ["a fine film", "a dull film"]
    first, second = _logits(tmp_path / "a", texts), _logits(tmp_path / "b", texts)
    assert torch.equal(first, second)  # same seed, same data: the same weights
    assert first.argmax(-1).tolist() == [1, 0]
