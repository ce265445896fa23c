"""The bench's bulk part: `bertserve run-batch` beside live traffic, on the default models.

  live under bulk  /classify at c=1 (wrk), idle, then while `run-batch --url` saturates the
                   service with /classify lines at batch priority: p50 within 2 x its idle
                   p50, p99 within its idle p99 + 2 batch runtimes (the mean batch runtime
                   measured meanwhile, from bertserve_inference_seconds)
  bulk alone       `run-batch --url` throughput (its own lines/s) against the saturated
                   /classify throughput of wrk at c=256 on the same service: >= 0.9 x
  in-process       `run-batch` without --url against the raw engine's length-sorted loop at
                   batch 32 on the same sentences and variant: >= 0.95 x
  no starvation    live /classify at c=16 (wrk) while a client sends batch-priority
                   /classify requests 4 at a time: every one answered 200, and none queued
                   longer than the aging bound (BERTSERVE_BATCH_MAX_WAIT_S) + 1 batch
                   (its X-Queue-Time)

Every line of a bulk file holds one sentence, so lines/s is rows/s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from loadtest import procs, raw_engine, wrk
from loadtest.texts import short_sentences
from service.settings import Settings

MODEL = "minilm-sentiment"
LIVE_P50_X = 2.0
P99_BATCHES = 2
BULK_X = 0.9
IN_PROCESS_X = 0.95
STARVE_CONCURRENCY = 16


@dataclass
class BulkResult:
    idle: dict[str, float]  # c=1 p50_ms, p99_ms
    under_bulk: dict[str, float]
    batch_runtime_ms: float  # mean, while the bulk job ran
    saturated_rps: float
    bulk_lines_per_s: float
    in_process_lines_per_s: float
    raw_sorted_rows_per_s: float
    variant: str
    aging_s: float
    starvation: dict[str, Any] = field(default_factory=dict)


def write_lines(path: Path, texts: list[str], count: int) -> Path:
    with path.open("wb") as f:
        for i in range(count):
            body = {"inputs": texts[i % len(texts)]}
            f.write(orjson.dumps({"custom_id": f"b{i}", "method": "POST", "url": "/classify", "body": body}) + b"\n")
    return path


def run_batch_cmd(source: Path, output: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "service", "run-batch", "--input", str(source), "--output", str(output), *args]


def rate_of(log: Path) -> float:
    """The lines/s of run-batch's summary line."""
    found = re.search(r"run-batch: done: .* ([\d.]+) lines/s", log.read_text())
    if found is None:
        raise RuntimeError(f"run-batch wrote no summary: {log.read_text()[-2000:]}")
    return float(found.group(1))


def inference_totals(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text

    def value(kind: str) -> float:
        found = re.search(rf'bertserve_inference_seconds_{kind}\{{model="{MODEL}"\}} (\S+)', text)
        return float(found.group(1)) if found else 0.0

    return value("sum"), value("count")


def live_under_bulk(url: str, script: Path, source: Path, seconds: float, work: Path) -> tuple[dict[str, float], float]:
    """wrk at c=1 while run-batch --url keeps the service busy; the mean batch runtime then."""
    log = work / "bulk-under.log"
    with log.open("wb") as out:
        job = subprocess.Popen(run_batch_cmd(source, work / "bulk-under.jsonl", "--url", url), stdout=out, stderr=out)
    try:
        time.sleep(min(3.0, seconds))  # the job's workers reach the service and fill its batch room
        before = inference_totals(url)
        result = wrk.run(url, script, 1, seconds)
        after = inference_totals(url)
    finally:
        job.send_signal(signal.SIGINT)
        procs.stop(job)
    batches = after[1] - before[1]
    runtime = (after[0] - before[0]) / batches * 1000 if batches else 0.0
    return {"p50_ms": result.p50_ms, "p99_ms": result.p99_ms}, runtime


def starvation(url: str, script: Path, texts: list[str], seconds: float) -> dict[str, Any]:
    """Batch-priority requests, 4 at a time, while wrk keeps c=16 live requests going."""
    waits: list[float] = []
    statuses: dict[int, int] = {}
    stop = threading.Event()

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=60, headers={"x-priority": "batch"}) as http:
            i = offset
            while not stop.is_set():
                r = http.post("/classify", json={"inputs": texts[i % len(texts)]})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    waits.append(float(r.headers["x-queue-time"]))
                i += 4

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        live = wrk.run(url, script, STARVE_CONCURRENCY, seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    return {
        "live_rps": live.rps,
        "live_p99_ms": live.p99_ms,
        "batch_answered": len(waits),
        "batch_statuses": statuses,
        "batch_max_queue_ms": max(waits, default=0.0),
    }


def run(seconds: float, raw_seconds: float, work: Path) -> BulkResult:
    from loadtest.bench import MODELS, cpu_variant

    texts = short_sentences()
    script = wrk.write_script(work, "bulk-classify", "/classify", [{"inputs": t} for t in texts])
    variant = cpu_variant(MODEL)
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = procs.start(procs.serve_cmd(port), {}, f"{url}/health/ready", work / "service-bulk.log")
    try:
        print("bench: bulk: idle c=1, saturated c=256", file=sys.stderr, flush=True)
        idle = wrk.run(url, script, 1, seconds)
        saturated = wrk.run(url, script, 256, seconds)
        # Files sized to outlast each measurement at the saturated rate (with room to spare).
        lines = max(200, int(saturated.rps * seconds * 3))
        print(f"bench: bulk: run-batch --url alone, {lines} lines", file=sys.stderr, flush=True)
        alone = write_lines(work / "bulk-alone.jsonl", texts, lines)
        log = work / "bulk-alone.log"
        with log.open("wb") as out:
            subprocess.run(
                run_batch_cmd(alone, work / "bulk-alone-out.jsonl", "--url", url), stdout=out, stderr=out, check=True
            )
        bulk_rate = rate_of(log)
        print("bench: bulk: live c=1 under run-batch --url", file=sys.stderr, flush=True)
        under, runtime = live_under_bulk(url, script, alone, seconds, work)
        print("bench: bulk: batch-priority requests beside live c=16", file=sys.stderr, flush=True)
        starved = starvation(url, script, texts, seconds)
    finally:
        procs.stop(proc)
    print("bench: bulk: in-process run-batch, and the raw sorted loop", file=sys.stderr, flush=True)
    log = work / "bulk-local.log"
    env = {"BERTSERVE_VARIANT": variant, "BERTSERVE_LOG_LEVEL": "warning"}
    local_lines = write_lines(work / "bulk-local.jsonl", texts, lines)
    with log.open("wb") as out:
        subprocess.run(
            run_batch_cmd(local_lines, work / "bulk-local-out.jsonl", "--models", str(MODELS)),
            stdout=out,
            stderr=out,
            check=True,
            env={**os.environ, **env},
        )
    raw = raw_engine.bench(MODELS / MODEL, variant, texts, [32], raw_seconds, sort=True)[0]
    return BulkResult(
        idle={"p50_ms": idle.p50_ms, "p99_ms": idle.p99_ms},
        under_bulk=under,
        batch_runtime_ms=runtime,
        saturated_rps=saturated.rps,
        bulk_lines_per_s=bulk_rate,
        in_process_lines_per_s=rate_of(log),
        raw_sorted_rows_per_s=raw.rows_per_s,
        variant=variant,
        aging_s=Settings().batch_max_wait_s,
        starvation=starved,
    )


def targets(bulk: dict[str, Any]) -> list[tuple[str, str, bool]]:
    idle, under, runtime = bulk["idle"], bulk["under_bulk"], bulk["batch_runtime_ms"]
    p99_bound = idle["p99_ms"] + P99_BATCHES * runtime
    bulk_x = bulk["bulk_lines_per_s"] / bulk["saturated_rps"]
    local_x = bulk["in_process_lines_per_s"] / bulk["raw_sorted_rows_per_s"]
    starved = bulk["starvation"]
    bound_ms = bulk["aging_s"] * 1000 + runtime
    all_ok = set(starved["batch_statuses"]) == {"200"} or set(starved["batch_statuses"]) == {200}
    return [
        (
            f"live /classify c=1 p50 under `run-batch --url` <= {LIVE_P50_X:g} x idle p50",
            f"{under['p50_ms']:.2f} ms vs idle {idle['p50_ms']:.2f} ms",
            under["p50_ms"] <= LIVE_P50_X * idle["p50_ms"],
        ),
        (
            f"live /classify c=1 p99 under `run-batch --url` <= idle p99 + {P99_BATCHES} batch runtimes",
            f"{under['p99_ms']:.2f} ms vs {idle['p99_ms']:.2f} + {P99_BATCHES} x {runtime:.2f} ms",
            under["p99_ms"] <= p99_bound,
        ),
        (
            f"`run-batch --url` alone >= {BULK_X:g} x saturated /classify (wrk c=256)",
            f"{bulk_x:.2f} x ({bulk['bulk_lines_per_s']:.0f} lines/s vs {bulk['saturated_rps']:.0f} req/s)",
            bulk_x >= BULK_X,
        ),
        (
            f"in-process `run-batch` >= {IN_PROCESS_X:g} x the raw length-sorted loop ({bulk['variant']}, batch 32)",
            f"{local_x:.2f} x ({bulk['in_process_lines_per_s']:.0f} vs {bulk['raw_sorted_rows_per_s']:.0f} rows/s)",
            local_x >= IN_PROCESS_X,
        ),
        (
            f"no starvation: batch-priority requests beside live c={STARVE_CONCURRENCY} all answered, "
            "none queued past the aging bound + 1 batch",
            f"{starved['batch_answered']} answered, statuses {starved['batch_statuses']}, "
            f"longest queue {starved['batch_max_queue_ms']:.0f} ms vs {bound_ms:.0f} ms",
            all_ok and starved["batch_answered"] > 0 and starved["batch_max_queue_ms"] <= bound_ms,
        ),
    ]


def section(bulk: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Bulk work beside live traffic (`run-batch`)",
        "",
        "One service on the default models (loadtest/bulk.py says each step). /classify, one "
        "rotten_tomatoes sentence a request or a line; wrk for the live traffic.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| live c=1 idle: p50 / p99 | {bulk['idle']['p50_ms']:.2f} / {bulk['idle']['p99_ms']:.2f} ms |",
        f"| live c=1 under `run-batch --url`: p50 / p99 | {bulk['under_bulk']['p50_ms']:.2f} / "
        f"{bulk['under_bulk']['p99_ms']:.2f} ms |",
        f"| mean batch runtime under bulk | {bulk['batch_runtime_ms']:.2f} ms |",
        f"| saturated /classify (wrk c=256) | {bulk['saturated_rps']:.0f} req/s |",
        f"| `run-batch --url` alone | {bulk['bulk_lines_per_s']:.0f} lines/s |",
        f"| in-process `run-batch` ({bulk['variant']}) | {bulk['in_process_lines_per_s']:.0f} lines/s |",
        f"| raw engine, length-sorted, batch 32 | {bulk['raw_sorted_rows_per_s']:.0f} rows/s |",
        f"| aging bound (BERTSERVE_BATCH_MAX_WAIT_S) | {bulk['aging_s']:g} s |",
    ]
