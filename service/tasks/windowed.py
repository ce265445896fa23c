"""Long single texts read whole (`stride` on /classify and /embed): each text is split into
the windows Hugging Face tokenizers give with `return_overflowing_tokens=True, stride=S,
truncation=True` at the model's max length (service/runtime/windows.py), and every window
is one item of the request: it takes room in the queue, rides in batches with other
requests' items, and is dropped with the rest when the deadline passes or the client
leaves. The task pools each text's window rows (classify/post.py, embed/post.py).

A text that fits in one window is one item, exactly as without `stride`. Pairs are not
windowed: they are cut to the max length as without `stride` (`truncate`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from service.engine.seam import ServedModel
from service.engine.tokenizing import INLINE_TOKENIZE_CHARS
from service.errors import InvalidInput
from service.runtime.tokenizer import InputTooLong
from service.runtime.windows import Split, Window
from service.settings import env_name
from service.tasks.common import Admitted, Call, Texts, check_queue, run_ids, too_long


@dataclass(frozen=True)
class Windowed:
    """Per text: its window rows, one (windows, ...) array, and its split."""

    rows: list[np.ndarray]
    splits: list[Split]
    tokens: int  # every token run, overlaps counted
    # Asked with `states`: per text, per window, its pooled row then its tokens' states.
    states: list[list[np.ndarray]] | None = None


def check_stride(served: ServedModel, stride: int) -> None:
    """Step 5: windows must advance, so the overlap is under what a window holds."""
    top = served.encoder.token_windows().max_stride
    if not 0 <= stride <= top:
        raise InvalidInput(f"stride must be between 0 and {top} tokens for this model, not {stride}", param="stride")


async def read_whole(
    call: Call,
    admitted: Admitted,
    texts: Texts,
    stride: int | None,
    max_windows: int,
    truncate: bool = True,
    states: bool = False,
) -> Windowed:
    """Steps 6 to 9 for single texts split into windows: every window counts as an item.
    Without a stride, each text is its first window (cut, or refused with `truncate` off).
    With `states`, each window's token states come back too (late chunking)."""
    served = admitted.model
    items: list[str] = texts.items  # type: ignore[assignment]
    check_queue(served, len(items), texts.param)  # a window per text at least: refuse before tokenizing
    windows = served.encoder.token_windows()
    started = call.timing.tokenize_started = time.perf_counter()
    try:
        if sum(map(len, items)) <= INLINE_TOKENIZE_CHARS:
            splits = windows.split(items, stride)
        else:
            splits = await asyncio.to_thread(windows.split, items, stride)
    finally:
        call.timing.tokenize_s += time.perf_counter() - started
    if stride is None and not truncate:
        for index, split in enumerate(splits):
            if split.tokens > windows.max_length:
                raise too_long(texts, InputTooLong(index, split.tokens, windows.max_length))
    check_windows(texts, splits, max_windows)
    ids = [w.ids for split in splits for w in split.windows]
    if len(ids) > len(items):
        check_queue(served, len(ids), texts.param)
    flat = iter(await run_ids(call, admitted, ids, states))
    answers = [[next(flat) for _ in split.windows] for split in splits]
    tokens = sum(len(i) for i in ids)
    if not states:
        return Windowed([np.stack(rows) for rows in answers], splits, tokens)
    return Windowed([np.stack([a[0] for a in rows]) for rows in answers], splits, tokens, answers)


def check_windows(texts: Texts, splits: list[Split], max_windows: int) -> None:
    """The request's windows, all its texts together, within the cap; the refusal names the
    text that went over it."""
    total = 0
    for index, split in enumerate(splits):
        total += len(split.windows)
        if total > max_windows:
            where = texts.where(index)
            raise InvalidInput(
                f"{where} takes {len(split.windows)} windows, which brings the request to {total}, over the "
                f"limit of {max_windows} ({env_name('max_windows')}): split the request or lower the stride",
                param=where,
            )


def new_tokens(split: Split, stride: int | None) -> np.ndarray:
    """Per window, its content tokens not shared with the window before it: the first holds
    all of its own, each later one overlaps the one before (a full window) by `stride`."""
    content = np.array([int((~w.special).sum()) for w in split.windows], dtype=np.float64)
    content[1:] -= stride or 0
    return content


def span(window: Window) -> tuple[int | None, int | None]:
    """The characters a window's content tokens cover, [start, end) in the text: from the
    first token's start to the last one's end, so no whitespace at either edge. None where
    the tokenizer keeps no offsets."""
    if window.offsets is None:
        return None, None
    content = window.offsets[~window.special]
    if not len(content):
        return 0, 0
    return int(content[:, 0].min()), int(content[:, 1].max())
