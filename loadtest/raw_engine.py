"""The ceiling: the same ONNX file and tokenizer the service loads, called in a tight loop
with no HTTP, no queue and no event loop.

Its session settings are said exactly, and recorded with every result (`RawResult.session`,
`LatencyResult.session`): the service's own session options (`session_options`: graph
optimisation ORT_ENABLE_ALL, sequential execution, one inter-op thread, no CPU memory arena)
in one session driven by one loop. The throughput loops (`bench`, `bench_rerank`,
`open_model`) take the service's thread plan (`thread_plan` with this process's available
CPUs and BERTSERVE_* settings): the intra-op threads of one model's instances together
(instances x threads per session), in the one session, spinning as those instances do. The
batch-1 grid (`batch1_latency`, `Batch1`) sets threads and spinning itself, per row.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.manifest import Manifest
from service.runtime.cpus import available_cpus
from service.runtime.loader import thread_plan
from service.runtime.session import CUDA, OnnxSession, Spinning, session_options
from service.runtime.tokenizer import TextEncoder
from service.settings import Settings


@dataclass
class RawResult:
    batch_size: int
    rows_per_s: float
    p50_ms: float  # per batch, tokenization included
    session: str = ""  # describe(): the session settings it ran with


def describe(threads: int, spinning: Spinning, providers: list[str]) -> str:
    """The settings of a session opened with `session_options(threads, spinning)`, read back
    from the options themselves."""
    options = session_options(threads, spinning)
    return (
        f"1 session, {options.intra_op_num_threads} intra-op thread(s), {options.inter_op_num_threads} inter-op, "
        f"spinning {spinning}, {options.graph_optimization_level.name}, {options.execution_mode.name}, "
        f"cpu arena {'on' if options.enable_cpu_mem_arena else 'off'}, {providers[0]}"
    )


def service_plan(providers: list[str]) -> tuple[int, Spinning]:
    """The intra-op threads and spinning the service's plan gives one model's instances
    together: the ceiling uses the cores the service's sessions use, in one session."""
    settings = Settings()
    plan = thread_plan(settings, available_cpus(), CUDA in providers)
    return plan.instances * plan.threads, "off"


def open_model(
    model_dir: Path, variant: str, providers: list[str] | None = None
) -> tuple[OnnxSession, TextEncoder, str]:
    """One session on the service's thread plan (`service_plan`), the tokenizer the service
    would open for this variant, and the session's settings (`describe`)."""
    providers = providers or ["CPUExecutionProvider"]
    manifest = Manifest.read(model_dir)
    threads, spinning = service_plan(providers)
    session = OnnxSession(
        model_dir / manifest.variants[variant].file,
        output=manifest.output,
        pad_token_id=manifest.pad_token_id,
        providers=providers,
        threads=threads,
        spinning=spinning != "off",
    )
    settings = describe(threads, spinning, [session.provider])
    print(f"raw engine: {model_dir.name} {variant}: {settings}", file=sys.stderr, flush=True)
    return session, TextEncoder(model_dir / "tokenizer.json", manifest.max_length), settings


@dataclass
class LatencyResult:
    """Batch-1 latency of one onnxruntime setting: tokenize + run, one input per run."""

    threads: int
    spinning: str  # one of SPINNING
    p50_ms: float
    runs: int
    session: str = ""  # describe(): the session settings it ran with


# Idle intra-op threads: parked at once ("off"), spinning on between runs ("on"), or spinning
# during a run but stopped as soon as the last concurrent run returns ("on+stop",
# session.force_spinning_stop=1).
SPINNING: tuple[Spinning, ...] = ("off", "on", "on+stop")


def _tuned_session(path: Path, threads: int, spinning: Spinning) -> ort.InferenceSession:
    """The service's session options with the thread count and spinning chosen here, not the
    service's plan (the service itself only spins as "on+stop")."""
    return ort.InferenceSession(str(path), session_options(threads, spinning), providers=["CPUExecutionProvider"])


class Batch1:
    """One onnxruntime setting's batch-1 run (tokenize + run, one input per run), kept open so
    that it can be timed again and again beside something else (loadtest/floor.py)."""

    def __init__(self, model_dir: Path, variant: str, threads: int, spinning: Spinning) -> None:
        manifest = Manifest.read(model_dir)
        self.threads, self.spinning = threads, spinning
        self.session = describe(threads, spinning, ["CPUExecutionProvider"])
        self._output = manifest.output
        self._encoder = TextEncoder(model_dir / "tokenizer.json", manifest.max_length)
        self._session = _tuned_session(model_dir / manifest.variants[variant].file, threads, spinning)
        self._names = {i.name for i in self._session.get_inputs()}
        self._warm = False

    def run(self, text: str) -> None:
        ids = self._encoder.encode([text], True)[0][None, :].astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        self._session.run([self._output], {k: v for k, v in feeds.items() if k in self._names})

    def latencies(self, texts: list[str], seconds: float, first: int = 0) -> list[float]:
        """Seconds per run for `seconds`, the texts in turn from `first`."""
        if not self._warm:
            for text in texts[:3]:  # warm up: first runs allocate
                self.run(text)
            self._warm = True
        out: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            self.run(texts[(first + len(out)) % len(texts)])
            out.append(time.perf_counter() - t0)
        return out


def batch1_latency(
    model_dir: Path, variant: str, texts: list[str], seconds: float, threads: tuple[int, ...] = (1, 2)
) -> list[LatencyResult]:
    """p50 of batch-1 runs at every intra-op thread count x spinning setting, each for
    `seconds`, the texts in turn. No HTTP: the floor a served c=1 request can reach."""
    results = []
    for count in threads:
        for spinning in SPINNING:
            raw = Batch1(model_dir, variant, count, spinning)
            runs = raw.latencies(texts, seconds)
            results.append(LatencyResult(count, spinning, statistics.median(runs) * 1000, len(runs), raw.session))
    return results


def bench(
    model_dir: Path,
    variant: str,
    texts: list[str],
    batch_sizes: list[int],
    seconds: float,
    sort: bool = True,
    providers: list[str] | None = None,
) -> list[RawResult]:
    """Rows/s and p50 per batch size. `sort`: the best case for the engine, batches of
    neighbours in token length, so padding is minimal, as a perfect length-bucketing batcher
    would form them; otherwise the naive loop a user would write, batches in arrival order.
    `providers`: the CPU provider unless given (the CUDA check passes CUDA's)."""
    session, encoder, settings = open_model(model_dir, variant, providers)
    lengths = [len(ids) for ids in encoder.encode(texts, True)]
    ordered = [t for _, t in sorted(zip(lengths, texts, strict=True), key=lambda p: p[0])] if sort else list(texts)
    results = []
    for size in batch_sizes:
        batches = [ordered[i : i + size] for i in range(0, len(ordered) - size + 1, size)] or [ordered[:size]]
        session.run(encoder.encode(batches[0], True))  # warm the shape
        latencies: list[float] = []
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
        results.append(RawResult(size, rows / elapsed, statistics.median(latencies) * 1000, settings))
    return results


def bench_rerank(model_dir: Path, variant: str, sets: list[tuple[str, list[str]]], seconds: float) -> RawResult:
    """Ranking by cosine with an embedding model, one query and its passages per loop: one
    batch of them all (tokenize, run, normalise, score). rows/s counts passages, as the
    service's rerank rows do; p50 is per query."""
    session, encoder, settings = open_model(model_dir, variant)

    def rank(query: str, passages: list[str]) -> np.ndarray:
        vectors = np.asarray(session.run(encoder.encode([query, *passages], True)), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors[1:] @ vectors[0])

    rank(*sets[0])  # warm up
    latencies: list[float] = []
    rows = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        query, passages = sets[len(latencies) % len(sets)]
        t0 = time.perf_counter()
        rank(query, passages)
        latencies.append(time.perf_counter() - t0)
        rows += len(passages)
    elapsed = time.perf_counter() - start
    return RawResult(len(sets[0][1]) + 1, rows / elapsed, statistics.median(latencies) * 1000, settings)
