"""Classification: the common steps, then scores and labels. With a stride, a long single
text is read in windows (service/tasks/windowed.py) whose logits are pooled (post.py)."""

from __future__ import annotations

from dataclasses import dataclass

from service.state import AppState
from service.tasks.classify.post import Function, WindowPooling, default_function, pooled_scores, predictions, scores
from service.tasks.common import Call, Texts, admit, coverage, process
from service.tasks.windowed import check_stride, read_whole


@dataclass(frozen=True)
class Classified:
    model: str
    predictions: list[list[dict[str, object]]]
    tokens: int
    truncated: list[bool]
    covered: list[int | list[int]]
    windows: list[int]


async def classify(
    state: AppState,
    call: Call,
    texts: Texts,
    model: str | None,
    top_k: int | None,
    function: Function | None,
    truncate: bool,
    stride: int | None = None,
    pooling: WindowPooling = "mean",
) -> Classified:
    if stride is not None and not texts.pairs:
        return await _classify_whole(state, call, texts, model, top_k, function, stride, pooling)
    out = await process(state, call, "classify", model, texts, truncate)
    manifest = out.model.manifest
    chosen = function or default_function(manifest.multi_label)
    labels = manifest.labels or []
    found = predictions(scores(out.rows, chosen), labels, top_k)
    return Classified(out.model.name, found, out.tokens, *coverage(texts, out.cuts), [1] * len(texts.items))


async def _classify_whole(
    state: AppState,
    call: Call,
    texts: Texts,
    model: str | None,
    top_k: int | None,
    function: Function | None,
    stride: int,
    pooling: WindowPooling,
) -> Classified:
    admitted = admit(state, call, "classify", model, texts, check_model=lambda m: check_stride(m, stride), whole=True)
    read = await read_whole(call, admitted, texts, stride, state.settings.max_windows)
    manifest = admitted.model.manifest
    chosen = function or default_function(manifest.multi_label)
    found = predictions(pooled_scores(read.rows, chosen, pooling), manifest.labels or [], top_k)
    n = len(texts.items)
    covered: list[int | list[int]] = [len(t) for t in texts.items]
    return Classified(admitted.model.name, found, read.tokens, [False] * n, covered, [len(r) for r in read.rows])
