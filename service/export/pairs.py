"""Verification on text pairs (cross-encoders, pair classifiers).

The served side encodes a pair with `TextEncoder.encode_pairs`: the model's own pair template,
over-long pairs cut from the second text first (tokenizers' `only_second`), longest-first only
when the first text alone is over the limit. The PyTorch side asks the checkpoint's
transformers tokenizer for the same rule, independently: `only_second` for every pair it can
truncate that way, `longest_first` for the others, each group encoded (and padded) in its own
batches. Token ids, and segment ids where the graph takes them, must agree before any number is
compared.

A second reference, for checkpoints that sentence-transformers can load: `CrossEncoder.predict`
on the pairs that fit untruncated (it truncates longest-first, so only those compare like with
like), with the identity activation, so raw logits are compared with raw logits.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.export.data import Pair
from service.export.verify import BATCH_SIZE, Batch, Rows, check_same_ids
from service.runtime.tokenizer import TextEncoder

ONLY_SECOND = "only_second"
LONGEST_FIRST = "longest_first"

Log = Callable[[str], None]


@dataclass
class PairSet:
    """Pairs in verification order: those truncated second-first, then those whose first text
    alone is over the limit (truncated longest-first). `order` maps back to the input order."""

    pairs: list[Pair]
    second_first: int
    order: list[int]

    def groups(self) -> list[tuple[list[Pair], str]]:
        groups = [(self.pairs[: self.second_first], ONLY_SECOND), (self.pairs[self.second_first :], LONGEST_FIRST)]
        return [(pairs, strategy) for pairs, strategy in groups if pairs]


def arrange_pairs(tokenizer: Any, pairs: Sequence[Pair], max_length: int) -> PairSet:
    """Split the pairs by the truncation transformers applies to them: a pair `only_second`
    cannot bring under the limit (its first text is too long) is truncated longest-first."""
    second_first, longest_first = [], []
    for index, (first, second) in enumerate(pairs):
        try:
            tokenizer(first, second, truncation=ONLY_SECOND, max_length=max_length)
            second_first.append(index)
        except Exception:  # tokenizers' "sequence to truncate too short", a plain Exception
            longest_first.append(index)
    order = second_first + longest_first
    return PairSet([pairs[i] for i in order], len(second_first), order)


def _tokenize(tokenizer: Any, pairs: Sequence[Pair], strategy: str, max_length: int, **kwargs: Any) -> Any:
    return tokenizer(
        [a for a, _ in pairs],
        [b for _, b in pairs],
        truncation=strategy,
        max_length=max_length,
        return_token_type_ids=True,
        **kwargs,
    )


def encode_pair_batches(
    tokenizer: Any, pair_set: PairSet, max_length: int, input_names: list[str], batch_size: int = BATCH_SIZE
) -> list[Batch]:
    """The PyTorch side's inputs: the checkpoint's tokenizer, padded on the right by it."""
    batches = []
    for pairs, strategy in pair_set.groups():
        for start in range(0, len(pairs), batch_size):
            enc = _tokenize(
                tokenizer, pairs[start : start + batch_size], strategy, max_length, padding=True, return_tensors="np"
            )
            batches.append({n: np.asarray(enc[n], dtype=np.int64) for n in input_names})
    return batches


def served_pair_rows(
    encoder: TextEncoder, tokenizer: Any, pair_set: PairSet, max_length: int, input_names: list[str], what: str
) -> Rows:
    """(token ids, segment ids) rows as the service makes them, checked against the
    checkpoint's tokenizer: the template, the truncation and, where the graph reads them,
    the segment ids must be the ones PyTorch sees."""
    rows = encoder.encode_pairs(pair_set.pairs, truncate=True)
    ids: list[list[int]] = []
    segments: list[list[int]] = []
    for pairs, strategy in pair_set.groups():
        enc = _tokenize(tokenizer, pairs, strategy, max_length)
        ids += [list(row) for row in enc["input_ids"]]
        segments += [list(row) for row in enc["token_type_ids"]]
    check_same_ids([row[0].tolist() for row in rows], ids, what)
    if "token_type_ids" in input_names:
        check_same_ids([row[1].tolist() for row in rows], segments, f"{what} (segment ids)")
    return rows


@dataclass
class CrossEncoderReference:
    """CrossEncoder.predict's raw logits for the rows (by index) that fit untruncated."""

    indices: np.ndarray
    scores: np.ndarray
    activation: str


def crossencoder_reference(
    checkpoint: Path, tokenizer: Any, pair_set: PairSet, max_length: int, log: Log
) -> CrossEncoderReference | None:
    """None when sentence-transformers is not installed or cannot load the checkpoint: the
    PyTorch reference stands alone then, and the manifest says the check did not run."""
    if not sentence_transformers_installed():
        log("export: sentence-transformers is not installed: CrossEncoder.predict check skipped")
        return None
    whole = tokenizer([a for a, _ in pair_set.pairs], [b for _, b in pair_set.pairs], verbose=False)["input_ids"]
    lengths = [len(ids) for ids in whole]
    indices = np.array([i for i, n in enumerate(lengths) if n <= max_length], dtype=np.int64)
    if not len(indices):
        log("export: no verification pair fits untruncated: CrossEncoder.predict check skipped")
        return None
    try:
        with _quiet():
            model = _load_crossencoder(checkpoint, max_length)
            scores = model.predict(
                [list(pair_set.pairs[i]) for i in indices],
                batch_size=BATCH_SIZE,
                show_progress_bar=False,
                activation_fn=torch.nn.Identity(),
                convert_to_numpy=True,
            )
    except Exception as exc:  # sentence-transformers raises many types; all mean "not comparable"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
        log(f"export: WARNING CrossEncoder cannot run {checkpoint} ({type(exc).__name__}: {reason}); check skipped")
        return None
    activation = type(model.activation_fn).__name__
    log(f"export: CrossEncoder.predict reference on {len(indices)} pairs (its default activation: {activation})")
    return CrossEncoderReference(indices, np.asarray(scores, dtype=np.float32).reshape(len(indices), -1), activation)


def sentence_transformers_installed() -> bool:
    """Imported only when present: it is a test extra, not an export dependency."""
    return importlib.util.find_spec("sentence_transformers") is not None


def _load_crossencoder(checkpoint: Path, max_length: int) -> Any:
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(checkpoint), device="cpu", max_length=max_length, local_files_only=True)


@contextmanager
def _quiet() -> Iterator[None]:
    """sentence-transformers' own notices (deprecations, load details) are not export output."""
    st_logger = logging.getLogger("sentence_transformers")
    level = st_logger.level
    st_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        st_logger.setLevel(level)


def crossencoder_parity(reference: CrossEncoderReference, candidate: np.ndarray) -> dict[str, float]:
    diff = np.abs(candidate[reference.indices].reshape(reference.scores.shape) - reference.scores)
    return {"crossencoder_max_abs_diff": float(diff.max()), "crossencoder_rows": float(len(reference.indices))}
