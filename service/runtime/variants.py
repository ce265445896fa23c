"""Which graph variant a model serves, and why.

An explicit BERTSERVE_VARIANT is served as asked. Under `auto`, CUDA serves fp16 when the
model has it. On the CPU the answer depends on the CPU: int8 (dynamic quantization) runs
faster than fp32 where the CPU has int8 dot-product instructions (VNNI: about twice as fast
for a fully quantized model, 10% for one quantized only in its attention), and no faster
where it has not, where its small loss of accuracy buys nothing (the figures are in
docs/design.md, "Variants: int8 or fp32, by the CPU's instructions").

So when the model has both, the CPU's instructions decide (`int8_instructions`, read from
/proc/cpuinfo): the same answer on every replica of a host type, as it must be, or one text
gets two vectors depending on the replica that answers. A timing cannot promise that: two
replicas started together on one host timed the same model on both sides of a margin. Both
variants are still timed as the model loads (`time_sessions`, on `PROBES`), for /models and
the log, and where the instructions cannot be read (no /proc/cpuinfo) the timing decides:
fp32 unless int8 saves more than `MARGIN` of its time.

    VariantChoice(variant, reason, candidates, int8_ms=None, fp32_ms=None)
    int8_instructions(cpuinfo) -> flag | "" | None                    the CPU's int8 dot products
    decide(int8_ms, fp32_ms, isa=None, margin=MARGIN) -> VariantChoice  pure: figures -> choice
    probe_batches(max_length, token) -> list of batches               what is timed
    time_sessions(sessions, batches, repeats=REPEATS) -> {variant: ms}
    serve_faster(open_variant, batches, isa) -> (session, VariantChoice)   the other closed
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.runtime.session import OnnxSession

# The CPU flags (Linux's /proc/cpuinfo names) of int8 dot-product instructions, which
# onnxruntime's int8 kernels use: x86's AMX and VNNI (AVX-512 or AVX), Arm's dot product.
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "asimddp")
CPUINFO = Path("/proc/cpuinfo")
# Where the instructions are unknown: int8 must save more than this share of fp32's time to be
# served, else fp32, the graph closest to the checkpoint. Wide, because every replica times for
# itself: the savings measured fall far from it on both sides (about 50% with VNNI, 10-12% for
# an embedding model quantized only in its attention, 0-3% on AVX2 without VNNI), yet two
# replicas started together on one 2-core host timed that embedding model on both sides of it.
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


def int8_instructions(cpuinfo: Path = CPUINFO) -> str | None:
    """The first of INT8_FLAGS the CPU has; "" when it has none; None when unknown (no
    readable /proc/cpuinfo, or no flags line in it)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            flags = set(value.split())
            return next((flag for flag in INT8_FLAGS if flag in flags), "")
    return None


def decide(int8_ms: float, fp32_ms: float, isa: str | None = None, margin: float = MARGIN) -> VariantChoice:
    """By the CPU's instructions when known (`isa`: int8_instructions()): int8 with int8 dot
    products, else fp32. Unknown: int8 when it takes less than (1 - margin) of fp32's time on
    the same batches, else fp32."""
    if not (int8_ms > 0 and fp32_ms > 0):
        raise ValueError(f"timings must be positive, not int8 {int8_ms} ms, fp32 {fp32_ms} ms")
    saving = 1 - int8_ms / fp32_ms
    timed = f"int8 took {saving:.0%} less time than fp32 here" if saving > 0 else "int8 was no faster here"
    if isa:
        return VariantChoice(
            "int8", f"auto: this CPU has {isa} (int8 dot products): int8; {timed}", TIMED, int8_ms, fp32_ms
        )
    if isa == "":
        why = f"auto: this CPU has no int8 dot-product instructions (VNNI): fp32; {timed}"
        return VariantChoice("fp32", why, TIMED, int8_ms, fp32_ms)
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
    open_variant: Callable[[str], OnnxSession], batches: Sequence[Batch], isa: str | None
) -> tuple[OnnxSession, VariantChoice]:
    """Open a session of int8 and one of fp32, time them, and give back the one `decide`
    keeps with the choice; the other is closed before this returns (both, when anything
    fails), so only the served one's memory stays."""
    opened: dict[str, OnnxSession] = {}
    kept: OnnxSession | None = None
    try:
        for variant in TIMED:
            opened[variant] = open_variant(variant)
        timings = time_sessions(opened, batches)
        choice = decide(timings["int8"], timings["fp32"], isa)
        kept = opened[choice.variant]
        return kept, choice
    finally:
        for session in opened.values():
            if session is not kept:
                session.close()
        opened.clear()
