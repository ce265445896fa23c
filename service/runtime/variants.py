"""Which graph variant a model serves, and why.

An explicit BERTSERVE_VARIANT is served as asked. Under `auto`, CUDA serves fp16 when the
model has it. On the CPU the answer depends on the CPU: int8 (dynamic quantization) runs
about twice as fast as fp32 where the CPU has VNNI instructions, and no faster where it has
not, where its small loss of accuracy buys nothing (the figures are in docs/design.md,
"Variants: int8 or fp32, timed at load"). So when the model has both, each is timed on
this machine as it loads (`time_sessions`, on `PROBES`), and `decide` keeps the faster,
fp32 unless int8 saves more than `MARGIN` of its time.

    VariantChoice(variant, reason, candidates, int8_ms=None, fp32_ms=None)
    decide(int8_ms, fp32_ms, margin=MARGIN) -> VariantChoice        pure: timings -> choice
    probe_batches(max_length, token) -> list of batches               what is timed
    time_sessions(sessions, batches, repeats=REPEATS) -> {variant: ms}
    serve_faster(open_variant, batches) -> (session, VariantChoice)   the loser closed
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.runtime.session import OnnxSession

# int8 must save more than this share of fp32's time to be served: within it fp32 is kept,
# the graph closest to the checkpoint. Wide, because every replica times for itself: two
# replicas started together on one 2-core host timed an embedding model that saves about 10%
# on either side of a 5% margin, and served different vectors for one text. The savings
# measured fall far from 20% on both sides: about 50% with VNNI, 10-12% for an embedding
# model quantized only in its attention projections, 0-3% on AVX2 without VNNI.
MARGIN = 0.20
TIMED = ("int8", "fp32")
# (rows, tokens per row), cut to the model's max length: a short request alone (the latency at
# low load) and a batch of a busy queue (the throughput). Each timed REPEATS times, the best
# kept, after one untimed run of the first: a session's first run costs more than its next,
# a first run at a new shape does not (docs/design.md, "Other measured choices").
PROBES = ((1, 32), (4, 64))
REPEATS = 3

Batch = list[np.ndarray]


@dataclass(frozen=True)
class VariantChoice:
    variant: str
    reason: str
    # The variants the setting allows for this model: one, or int8 and fp32 when timed. What a
    # reload compares (service/runtime/loader.py, identity): a rescan cannot time.
    candidates: tuple[str, ...]
    int8_ms: float | None = None
    fp32_ms: float | None = None

    def as_dict(self) -> dict[str, object]:
        """As /models gives it."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {"int8_ms": ms(self.int8_ms), "fp32_ms": ms(self.fp32_ms), "reason": self.reason}


def decide(int8_ms: float, fp32_ms: float, margin: float = MARGIN) -> VariantChoice:
    """int8 when it takes less than (1 - margin) of fp32's time on the same batches, else fp32."""
    if not (int8_ms > 0 and fp32_ms > 0):
        raise ValueError(f"timings must be positive, not int8 {int8_ms} ms, fp32 {fp32_ms} ms")
    saving = 1 - int8_ms / fp32_ms
    if int8_ms < fp32_ms * (1 - margin):
        variant, why = "int8", f"int8 takes {saving:.0%} less time than fp32 on this CPU"
    elif saving > 0:
        variant, why = "fp32", f"int8 saves {saving:.1%} of fp32's time on this CPU, within {margin:.0%}: fp32 kept"
    else:
        variant, why = "fp32", "fp32 as fast as int8 or faster on this CPU"
    return VariantChoice(variant, f"auto: {why}", TIMED, int8_ms, fp32_ms)


def probe_batches(max_length: int, token: int) -> list[Batch]:
    return [[np.full(min(tokens, max_length), token, dtype=np.int64)] * rows for rows, tokens in PROBES]


def time_sessions(
    sessions: Mapping[str, OnnxSession], batches: Sequence[Batch], repeats: int = REPEATS
) -> dict[str, float]:
    """Milliseconds per variant: the sum over the batches of the best of `repeats` runs. The
    variants take turns on each batch, so a neighbour's load on a shared machine falls on
    both alike."""
    for session in sessions.values():
        session.run(batches[0])
    best = {name: [float("inf")] * len(batches) for name in sessions}
    for _ in range(repeats):
        for index, batch in enumerate(batches):
            for name, session in sessions.items():
                started = time.perf_counter()
                session.run(batch)
                best[name][index] = min(best[name][index], time.perf_counter() - started)
    return {name: sum(times) * 1000 for name, times in best.items()}


def serve_faster(
    open_variant: Callable[[str], OnnxSession], batches: Sequence[Batch]
) -> tuple[OnnxSession, VariantChoice]:
    """Open a session of int8 and one of fp32, time them, and give back the faster with the
    choice; the other is closed before this returns (both, when anything fails), so only the
    winner's memory stays."""
    opened: dict[str, OnnxSession] = {}
    kept: OnnxSession | None = None
    try:
        for variant in TIMED:
            opened[variant] = open_variant(variant)
        timings = time_sessions(opened, batches)
        choice = decide(timings["int8"], timings["fp32"])
        kept = opened[choice.variant]
        return kept, choice
    finally:
        for session in opened.values():
            if session is not kept:
                session.close()
        opened.clear()
