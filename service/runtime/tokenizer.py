"""The model's fast tokenizer (HF `tokenizers`, Rust; it releases the GIL while encoding)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tokenizers import Encoding, Tokenizer

from service.runtime.tokenizer_cache import load_shared
from service.runtime.windows import TokenWindows


class InputTooLong(Exception):
    """An input over the model's max length, with truncation off. It carries the input's
    position, not a wire name: the serving layer names the parameter for its route."""

    def __init__(self, index: int, tokens: int, max_length: int) -> None:
        super().__init__(f"input {index} has {tokens} tokens, over the max length of {max_length}")
        self.index = index
        self.tokens = tokens
        self.max_length = max_length


class Token(NamedTuple):
    id: int
    text: str
    special: bool
    start: int
    stop: int


# Where an input was cut: None when the ids hold all of it, else how many of its leading
# characters (Python str indices) they hold; for a pair, that count for each of its texts.
Cut = int | tuple[int, int] | None


class Encoded(NamedTuple):
    """Token ids per input (text or pair), and where each was cut (`Cut`)."""

    ids: list[np.ndarray]
    cuts: list[Cut]


class TokenizerError(Exception):
    """tokenizer.json does not load (the Rust library raises plain exceptions)."""


class TextEncoder:
    """Turns texts into token-id arrays, truncated to the model's max length or refused."""

    def __init__(self, tokenizer_file: Path, max_length: int) -> None:
        self._held: list[object] = []
        self.max_length = max_length
        # Shared with every other model of the same vocabulary (service/runtime/tokenizer_cache.py).
        self._full = self._shared(tokenizer_file, "whole", _whole)
        self._truncating = self._shared(
            tokenizer_file, f"cut at {max_length}", partial(_cut, max_length, "longest_first")
        )
        # Pairs lose tokens from their second text first, so a query (or premise) survives
        # whole; a first text that alone is over the limit falls back to longest-first.
        self._second_first = self._shared(
            tokenizer_file, f"cut at {max_length}, second first", partial(_cut, max_length, "only_second")
        )
        self._windows: TokenWindows | None = None

    def _shared(self, path: Path, role: str, configure: Callable[[Tokenizer], None]) -> Tokenizer:
        try:
            tokenizer, held = load_shared(path, role, configure)
        except Exception as exc:  # the one place the tokenizer library's load failures are mapped
            raise TokenizerError(f"{path.name} does not load: {_first_line(exc)}") from exc
        self._held.append(held)  # kept while this encoder lives
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return int(self._full.get_vocab_size(with_added_tokens=True))

    def encode(self, texts: Sequence[str], truncate: bool, max_tokens: int | None = None) -> list[np.ndarray]:
        """One int64 array per text. With truncate=False an over-long text raises
        InputTooLong (its index and token count), never silently cut. `max_tokens` first
        cuts each text's own tokens (before the special ones) to that many."""
        return self.encode_texts(texts, truncate, max_tokens).ids

    def encode_texts(self, texts: Sequence[str], truncate: bool, max_tokens: int | None = None) -> Encoded:
        """`encode`, and where each text was cut."""
        if max_tokens is not None:
            plain = self._full.encode_batch(list(texts), add_special_tokens=False)
            for encoding in plain:
                encoding.truncate(max_tokens)
            tokenizer = self._truncating if truncate else self._full
            encodings = [tokenizer.post_process(e) for e in plain]
        else:
            tokenizer = self._truncating if truncate else self._full
            # One text skips encode_batch's hop through the Rust thread pool (the common case).
            encodings = [tokenizer.encode(texts[0])] if len(texts) == 1 else tokenizer.encode_batch(list(texts))
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        if not truncate:
            for index, row in enumerate(ids):
                if len(row) > self.max_length:
                    raise InputTooLong(index, len(row), self.max_length)
        cuts: list[Cut] = [None] * len(ids)
        # Only a row at the max length (or any, under `max_tokens`) may have been cut: the
        # offsets are read for those alone, and the usual short input costs one comparison.
        for index, row in enumerate(ids):
            if (max_tokens is not None or len(row) >= self.max_length) and encodings[index].overflowing:
                cuts[index] = _reach(encodings[index])
        return Encoded(ids, cuts)

    def encode_pairs(
        self, pairs: Sequence[tuple[str, str]], truncate: bool, max_second_tokens: int | None = None
    ) -> list[np.ndarray]:
        """One (2, n) int64 array per pair: token ids and segment ids, in the model's own
        pair template ([CLS] a [SEP] b [SEP] for BERT, RoBERTa's <s> a </s></s> b </s>).
        Each distinct first text is tokenized once (a rerank query, shared by every pair).
        `max_second_tokens` first cuts each second text to that many tokens."""
        return self.encode_pair_texts(pairs, truncate, max_second_tokens).ids

    def encode_pair_texts(
        self, pairs: Sequence[tuple[str, str]], truncate: bool, max_second_tokens: int | None = None
    ) -> Encoded:
        """`encode_pairs`, and where each pair was cut: how much of each of its texts was kept."""
        rows, cuts = [], []
        for index, (joined, tokens) in enumerate(self._joined_pairs(pairs, truncate, max_second_tokens)):
            if not truncate and len(joined.ids) > self.max_length:
                raise InputTooLong(index, len(joined.ids), self.max_length)
            rows.append(np.array([joined.ids, joined.type_ids], dtype=np.int64))
            cut = len(joined) >= self.max_length or (max_second_tokens is not None and tokens[1] > max_second_tokens)
            cuts.append(_pair_reach(joined, tokens, pairs[index]) if cut else None)
        return Encoded(rows, cuts)

    def _joined_pairs(
        self, pairs: Sequence[tuple[str, str]], truncate: bool, max_second_tokens: int | None
    ) -> list[tuple[Encoding, tuple[int, int]]]:
        """Each pair in the model's template, truncated second text first, with each text's
        own token count before any cut; each distinct first text encoded once."""
        firsts = list(dict.fromkeys(a for a, _ in pairs))
        first_of = dict(zip(firsts, self._full.encode_batch(firsts, add_special_tokens=False), strict=True))
        seconds = self._full.encode_batch([b for _, b in pairs], add_special_tokens=False)
        joined = []
        for (a, _), second in zip(pairs, seconds, strict=True):
            tokens = (len(first_of[a]), len(second))
            if max_second_tokens is not None:
                second.truncate(max_second_tokens)
            joined.append((self._join(first_of[a], second, truncate), tokens))
        return joined

    def tokens(
        self, items: Sequence[str] | Sequence[tuple[str, str]], truncate: bool, add_special_tokens: bool
    ) -> list[list[Token]]:
        """Every token of every text (or pair) as the model is fed it, truncation included:
        id, text, whether it is special, and character offsets (Python str indices) into the
        text it came from. Without special tokens, the same tokens less the special ones."""
        if items and isinstance(items[0], tuple):
            pairs: list[tuple[str, str]] = list(items)  # type: ignore[arg-type]
            encodings = self._encoded_pairs(pairs, truncate)
            sources: list[tuple[str, ...]] = pairs  # type: ignore[assignment]
        else:
            texts: list[str] = list(items)  # type: ignore[arg-type]
            encodings = (self._truncating if truncate else self._full).encode_batch(texts)
            sources = [(t,) for t in texts]
        out = []
        for source, e in zip(sources, encodings, strict=True):
            row = []
            for i, (start, stop) in enumerate(e.offsets):
                special = bool(e.special_tokens_mask[i])
                if special and not add_special_tokens:
                    continue
                seq = e.sequence_ids[i]
                text = e.tokens[i] if special or seq is None else source[seq][start:stop]
                row.append(Token(e.ids[i], text, special, start, stop))
            out.append(row)
        return out

    def _encoded_pairs(self, pairs: Sequence[tuple[str, str]], truncate: bool) -> list[Encoding]:
        """Each pair encoded whole by the library: the ids and truncation of `_joined_pairs`,
        with offsets into each text. (`_joined_pairs` joins texts encoded apart: a byte-level
        BPE's post-processor then trims the leading space off every word's offsets twice, one
        character too many.)"""
        if not truncate:
            return list(self._full.encode_batch(list(pairs)))
        return [self._second_text_first(partial(_encode_pair, pair)) for pair in pairs]

    def token_windows(self) -> TokenWindows:
        """The windowing for token classification, built on first use (one per model)."""
        if self._windows is None:
            self._windows = TokenWindows(self._full, self.max_length)
        return self._windows

    def _join(self, first: Encoding, second: Encoding, truncate: bool) -> Encoding:
        if not truncate:
            return self._full.post_process(first, second)
        return self._second_text_first(lambda t: t.post_process(first, second))

    def _second_text_first(self, encode: Callable[[Tokenizer], Encoding]) -> Encoding:
        """A pair truncated second text first; longest-first when the first text alone is
        over the limit."""
        try:
            return encode(self._second_first)
        except Exception:  # the tokenizer's "sequence to truncate too short": first alone too long
            return encode(self._truncating)


def _reach(encoding: Encoding) -> int:
    """How many leading characters of its text an encoding holds: where its last token that
    is not a special one ends."""
    return max((stop for run in _runs(encoding) for stop in run), default=0)


def _pair_reach(joined: Encoding, tokens: tuple[int, int], pair: tuple[str, str]) -> Cut:
    """Where a joined pair was cut, from each text's token count before and after: None when
    neither text lost a token, else the characters kept of each (a whole text's length).
    The library's sequence ids of a pair joined from texts encoded apart are not always set,
    so each text's tokens are told apart by the template: two runs of non-special tokens."""
    runs = _runs(joined)
    if len(runs) == 1 and not tokens[0]:  # the first text has no tokens: the run is the second's
        runs.insert(0, [])
    runs += [[], []]  # a text without tokens has no run
    if (len(runs[0]), len(runs[1])) == tokens:
        return None
    first, second = (max(runs[s], default=0) if len(runs[s]) < tokens[s] else len(pair[s]) for s in (0, 1))
    return first, second


def _runs(encoding: Encoding) -> list[list[int]]:
    """The end offsets of each run of non-special tokens: one run per text in the template."""
    runs: list[list[int]] = []
    after_special = True
    for (_, stop), special in zip(encoding.offsets, encoding.special_tokens_mask, strict=True):
        if special:
            after_special = True
        else:
            if after_special:
                runs.append([])
                after_special = False
            runs[-1].append(stop)
    return runs


def _encode_pair(pair: tuple[str, str], tokenizer: Tokenizer) -> Encoding:
    return tokenizer.encode(*pair)


def _whole(tokenizer: Tokenizer) -> None:
    tokenizer.no_padding()
    tokenizer.no_truncation()


def _cut(max_length: int, strategy: str, tokenizer: Tokenizer) -> None:
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, strategy=strategy)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else repr(exc)
