"""Batch defaults that follow the model: the fill floor and the padded-token budget.

Measured on 2 CPU cores with real sentences (`python -m loadtest.bench`, and A/B runs of
/classify at saturation, one server per setting):
- Fill floor. A batch costs about its padded tokens on a CPU, so padding is loss. A floor
  of 0.95 beat 0.85 at both sizes tried: BERT-base int8 at c=64 95.8 / 88.4 req/s against
  77.3 / 79.6 (0.98: 87.2, the batches get too small), MiniLM int8 388.6 against 378.6 at
  c=64 and 386.8 against 369.1 at c=256. On CUDA, where a larger batch costs little more,
  there is no floor.
- Token budget. 8,192 padded tokens per batch was measured on all-MiniLM-L6 (6 layers,
  hidden 384). A batch's cost per token grows with layers x hidden^2, so the same budget
  on BERT-base (12 x 768) would make a batch 8 times longer: every request queued behind it
  waits that much longer. The budget is scaled so a batch costs about what it costs on
  MiniLM; rows per batch still come from max_batch_size, and BERT-base's raw throughput is
  flat from 8 to 16 rows of real sentences (106-107 rows/s int8) and lower at 32 (98).
"""

from __future__ import annotations

import json
from pathlib import Path

CPU_MIN_FILL = 0.95
# Items per batch and queued items per model, per provider. On CUDA (H200, MiniLM fp32 and
# fp16, real sentences, three runs of `python -m loadtest.cuda_check`) the raw engine ran
# 6,500-11,600 rows/s at 32 rows a batch and 15,900-25,600 at 128, for 5.1-7.9 ms a batch: a
# larger batch costs little more. The queue bound is what it holds in time: 1,024 items wait
# ~2.5 s on 2 CPU cores, 8,192 about 0.3-0.5 s on that GPU, where at 1,024 a load of 64
# clients sending 32 texts each (2,048 items) was refused with 429s.
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 32, 128
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
