"""Micro-benchmark: what forming one batch costs the event loop with N items queued.

  python -m loadtest.batching_bench [--sizes 256 1024 4096] [--batches 400]

A real `Batcher` with an instant runner: the queue is filled to N items, and every batch the
runner queues as many fresh items as the batch took, so the depth stays at N. What is
timed is the whole per-batch turn of the loop (dropping dead items, selection, removing the
chosen items, resolving their futures, plus queueing the replacements), and, of it, the
time inside `select_batch`, and how well the batches are packed (real tokens / padded
tokens). Token lengths are those of the rotten_tomatoes sentences under the default
models' tokenizer (3 to 78, median 27); the batch limits are the defaults on a CPU (32
items, 8,192 padded tokens, fill floor 0.85).

To compare with another tree, run the file itself with that tree first on the path:
`PYTHONPATH=/path/to/old/tree .venv/bin/python loadtest/batching_bench.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from service.batching import batcher as batcher_module
from service.batching.batcher import Batcher
from service.export.data import load_reviews

TOKENIZER = Path(__file__).resolve().parent.parent / "models" / "all-minilm-l6-v2" / "tokenizer.json"

MAX_BATCH = 32
MAX_TOKENS = 8192
MIN_FILL = 0.85


def token_lengths() -> list[int]:
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return [len(e.ids) for e in tokenizer.encode_batch([t for t, _ in load_reviews("rotten_tomatoes")])]


async def _measure(depth: int, batches: int, lengths: list[int], window: int | None) -> dict[str, float]:
    rng = random.Random(depth)
    select_time = 0.0
    real_select = batcher_module.select_batch

    def timed_select(*args: Any, **kwargs: Any) -> Any:
        nonlocal select_time
        t0 = time.perf_counter()
        try:
            return real_select(*args, **kwargs)
        finally:
            select_time += time.perf_counter() - t0

    done = asyncio.Event()
    turns: list[float] = []
    last = 0.0
    far = asyncio.get_running_loop().time() + 3600
    sizes: list[int] = []
    fills: list[float] = []

    async def runner(payloads: list[int]) -> Sequence[int]:
        nonlocal last
        now = time.perf_counter()
        if last:
            turns.append(now - last)
        sizes.append(len(payloads))
        fills.append(sum(payloads) / (len(payloads) * max(payloads)))
        for _ in payloads:  # one request per item, as the routes submit them
            tokens = rng.choice(lengths)
            batcher.submit([(tokens, tokens)], far)
        if len(turns) >= batches:
            done.set()
        await asyncio.sleep(0)  # the runtime call yields to the loop, as run_in_executor does
        last = time.perf_counter()
        return payloads

    batcher_module.select_batch = timed_select  # type: ignore[assignment]
    try:
        extra: dict[str, Any] = {} if window is None else {"window": window}
        batcher: Batcher[int, int] = Batcher(
            runner, max_batch_size=MAX_BATCH, max_batch_tokens=MAX_TOKENS, max_queue_items=depth + MAX_BATCH,
            min_fill=MIN_FILL, **extra,
        )  # fmt: skip
        batcher.start()  # the loop task runs once this coroutine awaits: the queue is full by then
        for _ in range(depth):
            tokens = rng.choice(lengths)
            batcher.submit([(tokens, tokens)], far)
        await done.wait()
        await batcher.stop()
    finally:
        batcher_module.select_batch = real_select  # type: ignore[assignment]
    total = len(sizes)
    return {
        "queued": depth,
        "batches": total,
        "turn_us_median": statistics.median(turns) * 1e6,
        "turn_us_mean": statistics.fmean(turns) * 1e6,
        "select_us_mean": select_time / total * 1e6,
        "mean_batch": statistics.fmean(sizes),
        "fill": statistics.fmean(fills),  # real tokens / padded tokens
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--window", type=int, help="the Batcher's selection window (default: its own)")
    parser.add_argument("--json", action="store_true", help="one JSON object per size instead of a table")
    args = parser.parse_args(argv)
    if not args.json:
        print(f"{'queued':>7} {'turn p50 us':>12} {'turn mean us':>13} {'select us':>10} {'batch':>6} {'fill':>5}")
    lengths = token_lengths()
    for depth in args.sizes:
        row = asyncio.run(_measure(depth, args.batches, lengths, args.window))
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['queued']:>7} {row['turn_us_median']:>12.0f} {row['turn_us_mean']:>13.0f}"
                f" {row['select_us_mean']:>10.0f} {row['mean_batch']:>6.1f} {row['fill']:>5.2f}"
            )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
