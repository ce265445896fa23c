"""Late chunking (`chunk_tokens` on /embed): a text's tokens cut into chunks of about N tokens
at word boundaries, each chunk's vector the mean of its tokens' states from the whole window
that holds it, so it carries that window's context (Günther et al., "Late Chunking", 2024).

Windows overlap by the stride: token g of the text is in one window or two. A chunk is pooled
from one window: the latest window holding its first token (the one that reaches furthest
past it), and it grows word by word while its words stay inside that window and it holds at
most N tokens (a first word longer than N is a chunk of its own). A word is a run of tokens
with no whitespace between them (so "film." is one word); a word cut by the end of the last
window that holds its start is cut there too. Without offsets (a tokenizer that keeps none)
every token is its own word and spans are None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.runtime.windows import Split


@dataclass(frozen=True)
class Chunk:
    window: int  # the window its vector is pooled from
    positions: np.ndarray  # its tokens' rows in that window (special tokens never)
    start: int | None  # [start, end): the characters it covers in the text
    end: int | None


def cut_chunks(split: Split, stride: int | None, size: int) -> list[Chunk]:
    content = [np.flatnonzero(~w.special) for w in split.windows]
    # Window k's content tokens are the text's tokens base[k] .. base[k] + len(content[k]).
    base = [0]
    for own in content[:-1]:
        base.append(base[-1] + len(own) - (stride or 0))
    total = base[-1] + len(content[-1]) if content else 0
    offsets = _text_offsets(split, content, base, total)
    starts_word = np.ones(total, dtype=bool)
    if offsets is not None and total:
        starts_word[1:] = offsets[1:, 0] > offsets[:-1, 1]
    word_ends = np.append(np.flatnonzero(starts_word)[1:], total)  # after token g's word: word_ends[...]
    end_of_word = np.repeat(word_ends, np.diff(np.append(np.flatnonzero(starts_word), total)))

    chunks = []
    g = 0
    while g < total:
        k = max(i for i in range(len(content)) if base[i] <= g < base[i] + len(content[i]))
        limit = base[k] + len(content[k])
        h = g
        while h < total:
            stop = int(end_of_word[h])
            if stop > limit:
                if h == g:
                    h = limit  # a word cut by the window's end: cut with it
                break
            if h > g and stop - g > size:
                break
            h = stop
        positions = content[k][g - base[k] : h - base[k]]
        if offsets is None:
            chunks.append(Chunk(k, positions, None, None))
        else:
            chunks.append(Chunk(k, positions, int(offsets[g, 0]), int(offsets[h - 1, 1])))
        g = h
    return chunks


def _text_offsets(split: Split, content: list[np.ndarray], base: list[int], total: int) -> np.ndarray | None:
    """The character span of each of the text's tokens, windows' overlaps read once."""
    if total == 0 or any(w.offsets is None for w in split.windows):
        return None
    out = np.zeros((total, 2), dtype=np.int64)
    for w, own, first in zip(split.windows, content, base, strict=True):
        assert w.offsets is not None
        out[first : first + len(own)] = w.offsets[own]
    return out


def late_vectors(states: Sequence[np.ndarray], chunks: Sequence[Chunk]) -> np.ndarray:
    """Each chunk's vector: the mean of its tokens' states in its window. `states[k]` is window
    k's answer with token states: its pooled row first, then one row per token."""
    return np.stack([states[c.window][1 + c.positions].mean(axis=0) for c in chunks]).astype(np.float32)
