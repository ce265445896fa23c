"""Batch defaults that follow the model: the fill floor and the padded-token budget.

- Fill floor. A batch costs about its padded tokens on a CPU, so padding is loss. A floor
  of 0.95 beat 0.85 on BERT-base and MiniLM at saturation, and 0.98 made the batches too
  small. On CUDA, where a larger batch costs little more, there is no floor.
- Token budget. REFERENCE_TOKENS padded tokens per batch was measured on all-MiniLM-L6 (6
  layers, hidden 384). A batch's cost per token grows with layers x hidden^2, so the same
  budget on BERT-base (12 x 768) would make a batch 8 times longer: every request queued
  behind it waits that much longer. The budget is scaled so a batch costs about what it
  costs on MiniLM; rows per batch come from max_batch_size, as BERT-base's raw throughput
  hardly changes with the rows a batch.

The figures: docs/design.md, "Batching".
"""

from __future__ import annotations

import json
from pathlib import Path

CPU_MIN_FILL = 0.95
# Items per batch and queued items per model, per provider. On CUDA a larger batch costs
# little more than a small one, so batches are larger there. The queue bound is what it
# holds in time: the GPU drains its larger queue sooner than the CPU drains its own, and
# with the CPU's bound the GPU refused a load it serves with its own
# (docs/design.md, "Batching").
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 32, 128
# Young batch-priority items in a batch led by live ones, while live requests keep coming
# (service/batching/batcher.py). On a CPU a batch costs about its rows: on 2 cores a MiniLM
# row of a short sentence took about 3.6 ms of a core, and with up to 8 bulk rows a batch a
# live request waited 35-38 ms at p50 under bulk load (3-4 ms idle); with one, and a runner
# kept free of bulk work, 10-11 ms (docs/benchmarks.md, "Bulk work beside live traffic (`run-batch`)").
# One, not none: under a live load that fills every batch, bulk work still moves before it
# ages (none while bulk runs on another session: the batcher). On CUDA a batch of 32 costs
# about what a batch of one does.
CPU_BULK_BESIDE_LIVE, CUDA_BULK_BESIDE_LIVE = 1, CUDA_BATCH_SIZE // 4
CPU_QUEUE_ITEMS, CUDA_QUEUE_ITEMS = 1024, 8192
REFERENCE_TOKENS = 8192
REFERENCE_COST = 6 * 384 * 384  # layers x hidden^2 of all-MiniLM-L6, where REFERENCE_TOKENS was measured
MIN_TOKENS = 512


def per_token_cost(config: dict[str, object]) -> int | None:
    """layers x hidden^2 from a Hugging Face config (BERT, RoBERTa, XLM-R; DistilBERT's
    n_layers / dim), or None when it does not say."""
    layers = config.get("num_hidden_layers", config.get("n_layers"))
    hidden = config.get("hidden_size", config.get("dim"))
    if isinstance(layers, int) and isinstance(hidden, int) and layers > 0 and hidden > 0:
        return layers * hidden * hidden
    return None


def batch_tokens_for(config: dict[str, object]) -> int:
    """The default padded-token budget per batch for a model of this shape."""
    cost = per_token_cost(config)
    if cost is None:
        return REFERENCE_TOKENS
    scaled = REFERENCE_TOKENS * REFERENCE_COST // cost
    return max(MIN_TOKENS, min(REFERENCE_TOKENS, scaled))


def read_config(directory: Path) -> dict[str, object]:
    """The model directory's config.json; empty when absent or unreadable (the defaults
    then stay the reference's)."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}
