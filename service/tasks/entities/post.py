"""Token classification (the `entities` task): per-token logits -> entities, as transformers'
`TokenClassificationPipeline` gives them, in numpy (the serving process imports neither
transformers nor torch).

    Strategy = Literal["none", "simple", "first", "average", "max"]
    DEFAULT_STRATEGY = "first"          what a request that names none gets
    EntitiesError(ValueError)           a bad option, with a one-line message (the client's fault)
    check_options(strategy: str, stride: int | None, max_stride: int) -> Strategy
    TagOptions(labels: Sequence[str], traits: SubwordTraits, strategy: Strategy = DEFAULT_STRATEGY,
               ignore_labels: Collection[str] = ("O",))
    softmax(logits: np.ndarray) -> np.ndarray
    tag_batch(texts: Sequence[str], windows: Sequence[Sequence[Window]],
              logits: Sequence[Sequence[np.ndarray]], options) -> list[list[Entity]]
    window_entities(text: str, window: Window, scores: np.ndarray, options) -> list[Entity]
    merge_windows(per_window: Sequence[list[Entity]]) -> list[Entity]
    Entity: {"label": str, "score": float, "text": str, "start": int | None, "end": int | None}

`logits` holds one (n_tokens, n_labels) array per window (`service.runtime.windows`), in
window order, exactly as long as its window (a padded batch's rows cut back to it).
`tag_batch` runs one softmax over every token of every text. Entities come in text order.
For the aggregated strategies `text == input[start:end]`; for "none" `text` is the token
as the pipeline spells it ("##ing"; the unknown token spelt as the text it
stands for), and `start`/`end` are None only where the tokenizer gives no offsets.

The pipeline's rules, followed here:
- Special tokens (CLS, SEP, padding) are dropped; text that looks like one ("[MASK]"
  typed in the input) is a token like any other. Scores are float32 where logits are.
- "none": one entity per token, its raw tag ("B-PER") and probability.
- "simple": each token takes its argmax tag, then tokens are grouped.
- "first" / "average" / "max": tokens are first fused into words, then grouped. A token
  continues the word before it when the tokenizer's model has a continuing-subword prefix
  ("##") and the token's spelling differs in length from the text it covers; otherwise,
  when no space is right before it or at its first character. Word ids are not used
  (transformers 5 uses them only for pre-split input). The unknown token starts a word.
  The word's tag: its first token's argmax ("first"), the argmax of the token with the
  highest probability, the first on ties ("max"), the argmax of the mean probabilities
  ("average"), with that probability as the word's score.
- Grouping: an entry joins the group before it when its tag, B-/I- stripped, is the same
  and it is not a B- (so "B-PER B-PER" is two groups, "O O" one). The group's label is the
  first member's tag after its first "-"; its score the mean of the members' scores; its
  span from the first member's start to the last member's end.
- ignore_labels is compared with the raw tag for "none" and with the group label otherwise.
- Windows (stride): each window is tagged and filtered alone; then all entities are sorted
  by start, and one that starts inside the entity kept before it replaces that one when it
  is longer, or as long with a higher score, and is dropped otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict, get_args

import numpy as np

from service.runtime.windows import SubwordTraits, Window

Strategy = Literal["none", "simple", "first", "average", "max"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
# Entities end on word boundaries: "simple" cuts a word wherever the model tags one of its
# sub-words otherwise ("Tom Hank" when "##s" comes out "O"). Of the word strategies, "first"
# reads the one token every tagger is trained on: the common recipe (transformers' NER
# examples) labels a word's first sub-word and masks the rest out of the loss, so the others'
# tags are untrained there and "max" or "average" would let them outvote it.
DEFAULT_STRATEGY: Strategy = "first"


class EntitiesError(ValueError):
    """A token-classification option the model or its tokenizer cannot honour."""


class Entity(TypedDict):
    label: str
    score: float
    text: str
    start: int | None
    end: int | None


def check_options(strategy: str, stride: int | None, max_stride: int) -> Strategy:
    """The strategy, checked with the stride before any work is done."""
    if strategy not in STRATEGIES:
        raise EntitiesError(f"unknown aggregation {strategy!r}: one of {', '.join(STRATEGIES)}")
    if stride is not None:
        if strategy == "none":
            raise EntitiesError("stride merges entities across windows: it needs an aggregation other than 'none'")
        if not 0 <= stride <= max_stride:
            raise EntitiesError(f"stride must be between 0 and {max_stride} tokens for this model, not {stride}")
    return strategy


@dataclass(frozen=True)
class TagOptions:
    labels: Sequence[str]
    traits: SubwordTraits
    strategy: Strategy = DEFAULT_STRATEGY
    ignore_labels: Collection[str] = ("O",)

    @functools.cached_property
    def _table(self) -> _LabelTable:
        return _LabelTable.of(tuple(self.labels))


@dataclass(frozen=True)
class _LabelTable:
    """Per label index: its tag with B-/I- stripped (as an id), whether it is a B-, and the
    group label it gives a group it starts."""

    tag_ids: np.ndarray
    is_begin: np.ndarray
    group_labels: tuple[str, ...]

    @staticmethod
    def of(labels: tuple[str, ...]) -> _LabelTable:
        tags = [label[2:] if label.startswith(("B-", "I-")) else label for label in labels]
        ids = {tag: i for i, tag in enumerate(dict.fromkeys(tags))}
        return _LabelTable(
            tag_ids=np.array([ids[t] for t in tags], dtype=np.int64),
            is_begin=np.array([label.startswith("B-") for label in labels], dtype=bool),
            group_labels=tuple(label.split("-", 1)[-1] for label in labels),
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities; half precision is computed in float32, as the pipeline does."""
    values = np.asarray(logits)
    if values.dtype != np.float64:
        values = values.astype(np.float32, copy=False)
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def tag_batch(
    texts: Sequence[str],
    windows: Sequence[Sequence[Window]],
    logits: Sequence[Sequence[np.ndarray]],
    options: TagOptions,
) -> list[list[Entity]]:
    flat = _check_rows(texts, windows, logits, options)
    if not flat:
        return [[] for _ in texts]
    sizes = [len(rows) for rows in flat]
    scores = np.split(softmax(np.concatenate(flat)), np.cumsum(sizes)[:-1])
    out: list[list[Entity]] = []
    at = 0
    for text, text_windows in zip(texts, windows, strict=True):
        found = [window_entities(text, w, scores[at + i], options) for i, w in enumerate(text_windows)]
        at += len(text_windows)
        out.append(merge_windows(found) if len(found) > 1 else (found[0] if found else []))
    return out


def _check_rows(
    texts: Sequence[str],
    windows: Sequence[Sequence[Window]],
    logits: Sequence[Sequence[np.ndarray]],
    options: TagOptions,
) -> list[np.ndarray]:
    """The rows, flattened, after the checks that do not depend on them: shapes (the
    caller's bug: ValueError) and offsets (the request's: EntitiesError)."""
    if not len(texts) == len(windows) == len(logits):
        raise ValueError(f"{len(texts)} texts, {len(windows)} window lists, {len(logits)} logit lists")
    flat: list[np.ndarray] = []
    for text_windows, text_logits in zip(windows, logits, strict=True):
        if len(text_windows) != len(text_logits):
            raise ValueError(f"{len(text_windows)} windows but {len(text_logits)} logit arrays")
        if options.strategy == "none" and len(text_windows) > 1:
            raise EntitiesError("several windows are merged by entity: they need an aggregation other than 'none'")
        for window, rows in zip(text_windows, text_logits, strict=True):
            if rows.shape != (len(window), len(options.labels)):
                raise ValueError(f"logits of shape {rows.shape} for {len(window)} tokens, {len(options.labels)} labels")
            if options.strategy != "none" and window.offsets is None:
                raise EntitiesError(
                    f"aggregation {options.strategy!r} needs character offsets, which this model's tokenizer "
                    "does not give: use 'none'"
                )
            flat.append(rows)
    return flat


def window_entities(text: str, window: Window, scores: np.ndarray, options: TagOptions) -> list[Entity]:
    """One window's entities, filtered; `scores` are its rows after softmax."""
    keep = np.flatnonzero(~window.special)
    rows = scores[keep]
    if not len(keep):
        return []
    if options.strategy == "none":
        return _per_token(text, window, keep, rows, options)
    if window.offsets is None:
        raise EntitiesError(f"aggregation {options.strategy!r} needs character offsets: use 'none'")
    if options.strategy == "simple":
        first = last = np.arange(len(keep))
        labels, values = _argmax(rows)
    else:
        first = np.flatnonzero(~_subwords(text, window, keep, options.traits))
        last = np.append(first[1:], len(keep)) - 1
        labels, values = _fuse_words(rows, first, options.strategy)
    starts = window.offsets[keep[first], 0]
    ends = window.offsets[keep[last], 1]
    return _groups(text, labels, values, starts, ends, options)


def _argmax(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    best = rows.argmax(axis=1)
    return best, rows[np.arange(len(rows)), best]


def _per_token(text: str, window: Window, keep: np.ndarray, rows: np.ndarray, options: TagOptions) -> list[Entity]:
    labels, values = _argmax(rows)
    out: list[Entity] = []
    for position, label, value in zip(keep.tolist(), labels.tolist(), values.tolist(), strict=True):
        name = options.labels[label]
        if name in options.ignore_labels:
            continue
        spelling, start, end = window.tokens[position], None, None
        if window.offsets is not None:
            start, end = (int(v) for v in window.offsets[position])
            if int(window.ids[position]) == options.traits.unk_id:
                spelling = text[start:end]
        out.append({"label": name, "score": value, "text": spelling, "start": start, "end": end})
    return out


def _subwords(text: str, window: Window, keep: np.ndarray, traits: SubwordTraits) -> np.ndarray:
    """Whether each content token continues the word before it; the first never does."""
    assert window.offsets is not None
    spans = window.offsets[keep].tolist()
    if traits.prefix:
        flags = [len(window.tokens[i]) != len(text[s:e]) for i, (s, e) in zip(keep.tolist(), spans, strict=True)]
    else:
        flags = [s > 0 and " " not in text[s - 1 : s + 1] for s, _ in spans]
    sub = np.array(flags, dtype=bool)
    if traits.unk_id is not None:
        sub &= window.ids[keep] != traits.unk_id
    if len(sub):
        sub[0] = False
    return sub


def _fuse_words(rows: np.ndarray, first: np.ndarray, strategy: Strategy) -> tuple[np.ndarray, np.ndarray]:
    """Each word's tag and score, from its tokens' rows (`first`: each word's first token)."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=rows.dtype)
    counts = np.diff(np.append(first, len(rows)))
    if strategy == "average":
        means = np.add.reduceat(rows, first, axis=0) / counts[:, None].astype(rows.dtype)
        return _argmax(means)
    best, top = _argmax(rows)
    if strategy == "first":
        return best[first], top[first]
    if strategy != "max":
        raise EntitiesError(f"unknown aggregation {strategy!r}")
    word_peak = np.repeat(np.maximum.reduceat(top, first), counts)
    at_peak = np.where(top == word_peak, np.arange(len(rows)), len(rows))
    chosen = np.minimum.reduceat(at_peak, first)
    return best[chosen], top[chosen]


def _groups(
    text: str, labels: np.ndarray, values: np.ndarray, starts: np.ndarray, ends: np.ndarray, options: TagOptions
) -> list[Entity]:
    """Adjacent entries with the same tag (B-/I- stripped) form a group, a B- opens one."""
    if not len(labels):
        return []
    table = options._table
    opens = np.ones(len(labels), dtype=bool)
    tags = table.tag_ids[labels]
    opens[1:] = (tags[1:] != tags[:-1]) | table.is_begin[labels[1:]]
    heads = np.flatnonzero(opens)
    tails = np.append(heads[1:], len(labels)) - 1
    counts = np.diff(np.append(heads, len(labels))).astype(values.dtype)
    means = np.add.reduceat(values, heads) / counts
    out: list[Entity] = []
    for head, tail, score in zip(heads.tolist(), tails.tolist(), means.tolist(), strict=True):
        name = table.group_labels[int(labels[head])]
        if name in options.ignore_labels:
            continue
        start, end = int(starts[head]), int(ends[tail])
        out.append({"label": name, "score": score, "text": text[start:end], "start": start, "end": end})
    return out


def merge_windows(per_window: Sequence[list[Entity]]) -> list[Entity]:
    """One list from overlapping windows' entities: by start; of two that overlap (the later
    starts inside the one kept before it), the longer wins, then the higher score. The
    pipeline lists the first entity twice when its span is empty (a byte-level whitespace
    token's can be): that duplicate is the one difference kept from it on purpose."""
    ordered = sorted((e for found in per_window for e in found), key=lambda e: _span(e)[0])
    kept: list[Entity] = []
    for entity in ordered:
        if kept and _starts_inside(entity, kept[-1]):
            if _beats(entity, kept[-1]):
                kept[-1] = entity
        else:
            kept.append(entity)
    return kept


def _span(entity: Entity) -> tuple[int, int]:
    start, end = entity["start"], entity["end"]
    if start is None or end is None:
        raise EntitiesError("entities without character offsets cannot be merged across windows")
    return start, end


def _starts_inside(entity: Entity, previous: Entity) -> bool:
    start, _ = _span(entity)
    previous_start, previous_end = _span(previous)
    return previous_start <= start < previous_end


def _beats(entity: Entity, previous: Entity) -> bool:
    length = _span(entity)[1] - _span(entity)[0]
    previous_length = _span(previous)[1] - _span(previous)[0]
    return length > previous_length or (length == previous_length and entity["score"] > previous["score"])
