"""A real byte-level BPE tokenizer with RoBERTa's pair template (`<s> a </s></s> b </s>`),
trained here on rotten_tomatoes sentences. Only tokenizers: the unit tier uses it directly,
tests/tiny.py wraps it in transformers' RoBERTa tokenizer class for its checkpoints."""

from __future__ import annotations

import functools


@functools.cache
def bpe_tokenizer_json() -> str:
    """The trained tokenizer as tokenizer.json text (ids: <s> 0, <pad> 1, </s> 2)."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing

    from service.export.data import load_reviews

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    texts = [t for t, _ in load_reviews("rotten_tomatoes")[:3000]]
    bpe.train_from_iterator(texts, vocab_size=2000, min_frequency=2, special_tokens=specials, show_progress=False)
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    return str(bpe.to_str())
