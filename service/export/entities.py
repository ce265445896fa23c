"""Entity F1 of a token classifier on `--eval-data`, the gate of its reduced-precision variants.

The file is JSONL, one `{"text": str, "entities": [{"start", "end", "label"}, ...]}` per line,
`start`/`end` character offsets into `text` (Python `str` indices) and `label` the entity
type ("PER", not "B-PER"). Predicted entities are what the service answers with its default
aggregation (`DEFAULT_STRATEGY`, "first"): the rows go through the serving code's own windows
(`service.runtime.windows`, the first window: over-long texts are cut as the service cuts
them) and its numpy aggregation (`service.tasks.entities`). A prediction counts when its
(start, end, label) equals a gold entity exactly; gold entities past the characters the
first window covers are not counted, so the figure measures the model, not the truncation.
F1 is micro-averaged over every entity of the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from service.export.errors import ExportError
from service.export.verify import Rows, check_same_ids
from service.runtime.windows import TokenWindows, Window
from service.tasks.entities.post import DEFAULT_STRATEGY, EntitiesError, TagOptions, tag_batch

Span = tuple[int, int, str]


@dataclass(frozen=True)
class EntityExample:
    text: str
    entities: frozenset[Span]


def read_eval_entities(path: Path) -> list[EntityExample]:
    """Every line of the JSONL file, checked: a bad line is named, with what is wrong."""
    if not path.is_file():
        raise ExportError(f"--eval-data {path} does not exist")
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(_example(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ExportError(
                f'--eval-data {path} line {number}: needs {{"text", "entities": [{{"start", "end", "label"}}]}} '
                f"({detail})"
            ) from exc
    if not examples:
        raise ExportError(f"--eval-data {path} has no rows")
    return examples


def _example(row: Any) -> EntityExample:
    text = row["text"]
    if not isinstance(text, str):
        raise TypeError("text is not a string")
    spans = set()
    for entity in row["entities"]:
        start, end, label = int(entity["start"]), int(entity["end"]), str(entity["label"])
        if not 0 <= start < end <= len(text):
            raise ValueError(f"entity span {start}..{end} is outside the text's {len(text)} characters")
        spans.add((start, end, label))
    return EntityExample(text, frozenset(spans))


def entity_f1(predicted: Sequence[set[Span] | frozenset[Span]], gold: Sequence[set[Span] | frozenset[Span]]) -> float:
    """Micro F1 of exact (start, end, label) matches; 1.0 when neither side has an entity."""
    hits = sum(len(p & g) for p, g in zip(predicted, gold, strict=True))
    total = sum(len(p) for p in predicted) + sum(len(g) for g in gold)
    return 1.0 if total == 0 else 2.0 * hits / total


class EntityEval:
    """The eval rows as the service encodes them, and the F1 of a graph's logits on them."""

    def __init__(self, examples: list[EntityExample], tokenizer_file: Path, max_length: int, labels: list[str]) -> None:
        windows = TokenWindows(Tokenizer.from_file(str(tokenizer_file)), max_length)
        splits = windows.split([e.text for e in examples], stride=None)
        self.texts = [e.text for e in examples]
        self.windows: list[Window] = [s.windows[0] for s in splits]
        # Gold entities the first window cannot reach are left out of both sides' count.
        self.gold = [
            frozenset(g for g in e.entities if s.covered is None or g[1] <= s.covered)
            for e, s in zip(examples, splits, strict=True)
        ]
        self.options = TagOptions(labels=labels, traits=windows.traits, strategy=DEFAULT_STRATEGY, ignore_labels=("O",))

    @property
    def rows(self) -> Rows:
        return [w.ids for w in self.windows]

    @property
    def gold_count(self) -> int:
        return sum(len(g) for g in self.gold)

    def check_ids(self, tokenizer: Any, max_length: int) -> None:
        """The served windows must hold the token ids the checkpoint's tokenizer gives."""
        expected = tokenizer(self.texts, truncation=True, max_length=max_length)["input_ids"]
        check_same_ids([r.tolist() for r in self.rows], [list(ids) for ids in expected], "--eval-data rows")

    def f1(self, token_logits: np.ndarray) -> float:
        """`token_logits`: one row per real token of every eval row, rows in order."""
        return entity_f1(self.predict(token_logits), self.gold)

    def predict(self, token_logits: np.ndarray) -> list[set[Span]]:
        """Each row's entities as the service gives them by default, as (start, end, label)."""
        sizes = [len(w) for w in self.windows]
        per_row = np.split(token_logits, np.cumsum(sizes)[:-1])
        try:
            found = tag_batch(self.texts, [[w] for w in self.windows], [[rows] for rows in per_row], self.options)
        except EntitiesError as exc:
            raise ExportError(f"--eval-data: entities cannot be aggregated: {exc}") from exc
        return [{(int(e["start"] or 0), int(e["end"] or 0), e["label"]) for e in row} for row in found]
