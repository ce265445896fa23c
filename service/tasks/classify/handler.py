"""Classification: the common steps, then scores and labels."""

from __future__ import annotations

from dataclasses import dataclass

from service.state import AppState
from service.tasks.classify.post import Function, default_function, predictions, scores
from service.tasks.common import Call, Texts, coverage, process


@dataclass(frozen=True)
class Classified:
    model: str
    predictions: list[list[dict[str, object]]]
    tokens: int
    truncated: list[bool]
    covered: list[int | list[int]]


async def classify(
    state: AppState,
    call: Call,
    texts: Texts,
    model: str | None,
    top_k: int | None,
    function: Function | None,
    truncate: bool,
) -> Classified:
    out = await process(state, call, "classify", model, texts, truncate)
    manifest = out.model.manifest
    chosen = function or default_function(manifest.multi_label)
    labels = manifest.labels or []
    found = predictions(scores(out.rows, chosen), labels, top_k)
    return Classified(out.model.name, found, out.tokens, *coverage(texts, out.cuts))
