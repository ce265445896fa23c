"""Tokenization for a served model, the same wherever the model runs: on the event loop when
the request is small, else on the shared pool (the Rust tokenizer releases the GIL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from prometheus_client.metrics import Histogram as _LibraryHistogram

from service.metrics import HistogramChild
from service.runtime.tokenizer import Encoded, TextEncoder

# Small requests are tokenized on the event loop: the Rust tokenizer takes a short sentence
# in far less time than a hop to a worker thread takes under load (the runtime's threads hold
# the cores; docs/design.md, "The request path"). Large requests go to the pool, so the loop
# never stalls long.
INLINE_TOKENIZE_CHARS = 4096

Items = Sequence[str] | Sequence[tuple[str, str]]


async def tokenize(
    encoder: TextEncoder,
    pool: ThreadPoolExecutor,
    seconds: HistogramChild | _LibraryHistogram,
    items: Items,
    truncate: bool,
    max_second_tokens: int | None,
) -> Encoded:
    """Token ids per text or pair, and where each was cut (InputTooLong with truncate off)."""
    started = time.perf_counter()
    work = partial(encode, encoder, items, truncate, max_second_tokens)
    size = sum(len(i) if isinstance(i, str) else len(i[0]) + len(i[1]) for i in items)
    if size <= INLINE_TOKENIZE_CHARS:
        encoded = work()
    else:
        encoded = await asyncio.get_running_loop().run_in_executor(pool, work)
    seconds.observe(time.perf_counter() - started)
    return encoded


def encode(encoder: TextEncoder, items: Items, truncate: bool, max_second: int | None) -> Encoded:
    if items and isinstance(items[0], tuple):
        return encoder.encode_pair_texts(items, truncate, max_second)  # type: ignore[arg-type]
    return encoder.encode_texts(items, truncate, max_second)  # type: ignore[arg-type]
