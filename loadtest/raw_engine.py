"""The ceiling: the same ONNX file and tokenizer the service loads, called in a tight loop
with no HTTP, no queue and no event loop."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from service.manifest import Manifest
from service.runtime.cpus import available_cpus
from service.runtime.session import OnnxSession
from service.runtime.tokenizer import TextEncoder
from service.settings import Settings


@dataclass
class RawResult:
    batch_size: int
    rows_per_s: float
    p50_ms: float  # per batch, tokenization included


def bench(model_dir: Path, variant: str, texts: list[str], batch_sizes: list[int], seconds: float) -> list[RawResult]:
    manifest = Manifest.read(model_dir)
    settings = Settings()  # the service's own session settings, so the comparison is fair
    session = OnnxSession(
        model_dir / manifest.variants[variant].file,
        output=manifest.output,
        pad_token_id=manifest.pad_token_id,
        providers=["CPUExecutionProvider"],
        threads=settings.intra_op_threads or available_cpus(),
        spinning=settings.ort_spinning,
    )
    encoder = TextEncoder(model_dir / "tokenizer.json", manifest.max_length)
    # Best case for the engine: batches of neighbours in token length, so padding is minimal,
    # as a perfect length-bucketing batcher would form them.
    lengths = [len(ids) for ids in encoder.encode(texts, True)]
    ordered = [t for _, t in sorted(zip(lengths, texts, strict=True), key=lambda p: p[0])]
    results = []
    for size in batch_sizes:
        batches = [ordered[i : i + size] for i in range(0, len(ordered) - size + 1, size)] or [ordered[:size]]
        session.run(encoder.encode(batches[0], True))  # warm the shape
        latencies = []
        rows = 0
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            session.run(encoder.encode(batches[i % len(batches)], True))
            latencies.append(time.perf_counter() - t0)
            rows += size
            i += 1
        elapsed = time.perf_counter() - start
        results.append(RawResult(size, rows / elapsed, statistics.median(latencies) * 1000))
    return results
