"""Token windows for token classification: the tokenizer side.

A text longer than the model's max length is either cut to its first window (and the
caller is told how many characters were tagged) or split into windows that overlap by
`stride` tokens, as transformers' token-classification pipeline splits it
(`return_overflowing_tokens=True, stride=N`): each window holds max_length tokens with the
special ones, and the next starts `stride` content tokens before the previous one ended.

    TokenWindows(tokenizer: Tokenizer, max_length: int, unk_token: str | None = None)
        .split(texts: Sequence[str], stride: int | None) -> list[Split]
            stride None: the first window only (truncation); an int: every window
        .max_stride -> int          the largest stride the max length allows
        .traits -> SubwordTraits    what the post-processing needs to know of the tokenizer
    Split(windows: list[Window], covered: int | None, tokens: int)
    Window(ids, type_ids, tokens, offsets, special)
    subword_traits(tokenizer: Tokenizer, unk_token: str | None = None) -> SubwordTraits
    usable_offsets(offsets: np.ndarray, special: np.ndarray) -> np.ndarray | None

The tokenizer is copied once, with padding and truncation off, so the caller's own
settings stay untouched and one instance serves concurrent threads (nothing is
reconfigured per call): each text is encoded whole, once, and its windows are cut from
that encoding. Offsets are indices into the Python string, as `tokenizers` gives them for
`str` input. Word ids are carried for callers; the post-processing does not need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding, Tokenizer

# Spellings tried, in order, when the model does not name its unknown token (Unigram).
_UNK_SPELLINGS = ("[UNK]", "<unk>")


@dataclass(frozen=True, eq=False)
class Window:
    """One model input: token ids with their spelling, character span, special flag and word.

    `offsets` is an (n, 2) int64 array of [start, end) indices into the whole text (not the
    window), or None where the tokenizer maps tokens to no characters."""

    ids: np.ndarray
    type_ids: np.ndarray
    tokens: tuple[str, ...]
    offsets: np.ndarray | None
    special: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Split:
    """A text's windows. `covered`: how many leading characters of the text the windows
    tag (the whole length unless cut to its first window; None when cut without offsets).
    `tokens`: the whole text's tokens, special tokens included, before any cut."""

    windows: list[Window]
    covered: int | None
    tokens: int


@dataclass(frozen=True)
class SubwordTraits:
    """`prefix`: the tokenizer's model marks word continuations ("##" in WordPiece), so a
    token is a sub-word when its spelling is not as long as its span in the text; without it
    the pipeline falls back to "no space right before the token". `unk_id`: the unknown
    token, which is never a sub-word and is spelled as the text it stands for."""

    prefix: bool
    unk_id: int | None


def subword_traits(tokenizer: Tokenizer, unk_token: str | None = None) -> SubwordTraits:
    model = tokenizer.model
    prefix = bool(getattr(model, "continuing_subword_prefix", None))
    names = [unk_token] if unk_token else [getattr(model, "unk_token", None), *_UNK_SPELLINGS]
    for name in names:
        if name and (found := tokenizer.token_to_id(name)) is not None:
            return SubwordTraits(prefix, int(found))
    return SubwordTraits(prefix, None)


def usable_offsets(offsets: np.ndarray, special: np.ndarray) -> np.ndarray | None:
    """The offsets, or None where every content token has an empty span at 0: a tokenizer
    that keeps no alignment, whose spans would point nowhere."""
    content = offsets[~special]
    if len(content) and not content.any():
        return None
    return offsets


class TokenWindows:
    def __init__(self, tokenizer: Tokenizer, max_length: int, unk_token: str | None = None) -> None:
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._added = int(self._tokenizer.num_special_tokens_to_add(False))
        if max_length <= self._added:
            raise ValueError(f"max_length {max_length} leaves no room past {self._added} special tokens")
        self.max_length = max_length
        self.traits = subword_traits(tokenizer, unk_token)

    @property
    def max_stride(self) -> int:
        """Windows must advance: the overlap is under the content tokens a window holds."""
        return self.max_length - self._added - 1

    def split(self, texts: Sequence[str], stride: int | None) -> list[Split]:
        if stride is not None and not 0 <= stride <= self.max_stride:
            raise ValueError(f"stride {stride} is outside 0..{self.max_stride}")
        encodings = self._tokenizer.encode_batch(list(texts))
        return [self._split(text, encoding, stride) for text, encoding in zip(texts, encodings, strict=True)]

    def _split(self, text: str, encoding: Encoding, stride: int | None) -> Split:
        """Windows cut from the whole encoding: its leading and trailing special tokens around
        each run of content tokens. (Cutting first and adding the special tokens after, with
        `post_process`, would trim byte-level offsets twice.)"""
        full = _Full.of(encoding)
        content = np.flatnonzero(~full.special)
        if not len(content):
            return Split([full.window(np.arange(len(full.ids)))], len(text), len(full.ids))
        lo, hi = int(content[0]), int(content[-1]) + 1
        head, tail = np.arange(lo), np.arange(hi, len(full.ids))
        size = self.max_length - self._added
        starts = _starts(hi - lo, size, stride)
        windows = [
            full.window(np.concatenate([head, np.arange(lo + s, lo + min(s + size, hi - lo)), tail])) for s in starts
        ]
        cut = stride is None and hi - lo > size
        return Split(windows, _covered(windows[0]) if cut else len(text), len(full.ids))


def _starts(n: int, size: int, stride: int | None) -> list[int]:
    """Where each window's content starts, as `tokenizers` truncates with overflow: every
    `size - stride` tokens until a window reaches the end."""
    if stride is None or n <= size:
        return [0]
    starts = []
    for start in range(0, n, size - stride):
        starts.append(start)
        if start + size >= n:
            break
    return starts


@dataclass(frozen=True)
class _Full:
    """One text's whole encoding as arrays, to cut windows from."""

    ids: np.ndarray
    type_ids: np.ndarray
    tokens: list[str]
    offsets: np.ndarray
    special: np.ndarray

    @staticmethod
    def of(encoding: Encoding) -> _Full:
        return _Full(
            ids=np.asarray(encoding.ids, dtype=np.int64),
            type_ids=np.asarray(encoding.type_ids, dtype=np.int64),
            tokens=list(encoding.tokens),
            offsets=np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2),
            special=np.asarray(encoding.special_tokens_mask, dtype=bool),
        )

    def window(self, index: np.ndarray) -> Window:
        positions = index.tolist()
        special = self.special[index]
        return Window(
            ids=self.ids[index],
            type_ids=self.type_ids[index],
            tokens=tuple(self.tokens[i] for i in positions),
            offsets=usable_offsets(self.offsets[index], special),
            special=special,
        )


def _covered(window: Window) -> int | None:
    """Where the last tagged token ends: the next window would start past it."""
    if window.offsets is None:
        return None
    ends = window.offsets[~window.special, 1]
    return int(ends.max()) if len(ends) else 0
