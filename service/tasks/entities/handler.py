"""Token classification (NER): the common steps, over windows of each text, then the
pipeline-equivalent aggregation of post.py.

A text over the model's max length is tagged on its first window (the answer says how many
characters that covered), or, with a stride, split into overlapping windows that are
queued as items of the same request, batched like everything else, and merged."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from service.engine.tokenizing import INLINE_TOKENIZE_CHARS
from service.errors import InvalidInput
from service.runtime.tokenizer import InputTooLong
from service.state import AppState
from service.tasks.common import Call, Texts, admit, check_queue, run_ids, too_long
from service.tasks.entities.post import EntitiesError, Entity, TagOptions, check_options, tag_batch


@dataclass(frozen=True)
class Tagged:
    model: str
    entities: list[list[Entity]]
    covered: list[int | None]  # characters of each input that were tagged
    tokens: int


async def tag_texts(
    state: AppState,
    call: Call,
    texts: Texts,
    model_name: str | None,
    aggregation: str,
    ignore_labels: list[str],
    truncate: bool,
    stride: int | None,
) -> Tagged:
    admitted = admit(state, call, "entities", model_name, texts)
    served = admitted.model
    windows = served.encoder.token_windows()
    try:
        strategy = check_options(aggregation, stride, windows.max_stride)
    except EntitiesError as exc:
        raise InvalidInput(str(exc), param="stride" if "stride" in str(exc) else "aggregation") from exc
    items: list[str] = texts.items  # type: ignore[assignment]
    # Every text takes a window at least: the queue is checked before anything is tokenized,
    # and again once a stride has made the windows more.
    check_queue(served, len(items), texts.param, admitted.priority)
    if sum(map(len, items)) <= INLINE_TOKENIZE_CHARS:
        splits = windows.split(items, stride)
    else:
        splits = await asyncio.to_thread(windows.split, items, stride)
    if not truncate and stride is None:
        for index, split in enumerate(splits):
            if split.tokens > windows.max_length:
                raise too_long(texts, InputTooLong(index, split.tokens, windows.max_length))
    ids = [w.ids for split in splits for w in split.windows]
    if len(ids) > len(items):
        check_queue(served, len(ids), texts.param, admitted.priority)
    rows = iter(await run_ids(call, admitted, ids))
    logits = [[next(rows)[: len(w)] for w in split.windows] for split in splits]
    labels = served.manifest.labels or []
    options = TagOptions(labels, windows.traits, strategy, ignore_labels)
    try:
        entities = tag_batch(items, [s.windows for s in splits], logits, options)
    except EntitiesError as exc:
        raise InvalidInput(str(exc), param="aggregation") from exc
    return Tagged(served.name, entities, [s.covered for s in splits], sum(len(i) for i in ids))
