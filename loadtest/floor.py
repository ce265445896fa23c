"""The latency floor at concurrency 1: the raw engine's fastest batch-1 setting against the
service's /classify p50 at concurrency 1 (wrk, one keep-alive connection, the client `make
bench` uses), int8, in paired slices; then where the service's own time goes.

  python -m loadtest.floor [--model minilm|bert-base] [--grid-seconds 3]
                           [--slices 30] [--slice-seconds 1] [--requests 400]

1. The raw grid: every intra-op thread count x spinning setting (tokenize + run, no HTTP),
   `--grid-seconds` each; the fastest is the floor.
2. Paired slices: `--slices` times, the fastest setting for `--slice-seconds` (its session kept
   open in this process), then the service for as long. On this shared machine the floor
   itself moves by a millisecond or more within a minute (BERT-base: 13.7-15.2 ms between
   8-second rounds); slices a second apart see the same machine, so the gap is taken per
   slice, and its median and quartiles reported.
3. The service's own time: `--requests` sequential requests on one connection, reading the
   timing headers: the time in the app beyond tokenization and inference, and the round trip
   beyond the time in the app (HTTP parsing and writing, the kernel, this client).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loadtest import bert_base, procs, raw_engine, rawhttp, wrk
from loadtest.texts import short_sentences

MINILM = procs.REPO / "models" / "minilm-sentiment"


def served(model: str) -> tuple[Path, Path | None, dict[str, str]]:
    """The classifier's folder, the models folder the service is started on (None: the default
    models) and the environment that picks its int8 graph: "minilm" or "bert-base"."""
    if model == "bert-base":
        return bert_base.ensure(), bert_base.models_dir(), {"BERTSERVE_VARIANT": "int8"}
    return MINILM, None, {}


@dataclass
class Paired:
    raw_ms: list[float]  # p50 per slice
    service_ms: list[float]

    @property
    def gaps(self) -> list[float]:
        return [s - r for s, r in zip(self.service_ms, self.raw_ms, strict=True)]

    def quartiles(self) -> tuple[float, float, float]:
        """The per-slice gaps' first quartile, median and third quartile (ms)."""
        gaps = self.gaps
        q1, median, q3 = statistics.quantiles(gaps, n=4) if len(gaps) > 1 else gaps * 3
        return q1, median, q3

    def summary(self) -> str:
        q1, median, q3 = self.quartiles()
        return (
            f"{len(self.gaps)} paired slices: raw p50 median {statistics.median(self.raw_ms):.2f} ms, "
            f"service {statistics.median(self.service_ms):.2f} ms; gap per slice median {median:+.2f} ms "
            f"(quartiles {q1:+.2f} to {q3:+.2f})"
        )


def paired(raw: raw_engine.Batch1, texts: list[str], url: str, script: Path, slices: int, seconds: float) -> Paired:
    out = Paired([], [])
    for i in range(slices):
        runs = raw.latencies(texts, seconds, first=i * 37)  # a different stretch of texts each slice
        out.raw_ms.append(statistics.median(runs) * 1000)
        served = wrk.run(url, script, 1, seconds)
        if served.errors:
            raise SystemExit(f"floor: {served.errors} errors at c=1")
        out.service_ms.append(served.p50_ms)
    return out


async def _own_time(host: str, port: int, texts: list[str], requests: int) -> tuple[float, float, float]:
    """Medians in ms: the app's time beyond tokenization and inference, the round trip beyond
    the app's time, and the round trip."""
    conn = rawhttp.Connection(host, port)
    app, outside, trips = [], [], []
    loop = asyncio.get_running_loop()
    try:
        for i in range(requests + 20):
            started = loop.time()
            status, headers, _ = await conn.post("/classify", {"inputs": texts[i % len(texts)]})
            trip = (loop.time() - started) * 1000
            if status != 200:
                raise SystemExit(f"floor: /classify answered {status}")
            if i < 20:
                continue  # the first requests warm up the connection and the app
            total = float(headers["x-total-time"])
            app.append(total - float(headers["x-inference-time"]) - float(headers["x-tokenization-time"]))
            outside.append(trip - total)
            trips.append(trip)
    finally:
        await conn.close()
    return statistics.median(app), statistics.median(outside), statistics.median(trips)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("minilm", "bert-base"), default="minilm")
    parser.add_argument("--grid-seconds", type=float, default=3)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--slice-seconds", type=float, default=1)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args(argv)
    texts = short_sentences()
    model, models, env = served(args.model)
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as work:
        script = wrk.write_script(Path(work), "classify", "/classify", [{"inputs": t} for t in texts])
        proc = procs.start(procs.serve_cmd(port, models), env, f"{url}/health/ready", Path(work) / "service.log", 600)
        try:
            grid = raw_engine.batch1_latency(model, "int8", texts, args.grid_seconds)
            fastest = min(grid, key=lambda r: r.p50_ms)
            settings = " ".join(f"{r.threads}t/{r.spinning} {r.p50_ms:.2f}" for r in grid)
            print(f"raw grid ({args.model}, ms): {settings}; fastest {fastest.threads} threads, {fastest.spinning}")
            raw = raw_engine.Batch1(model, "int8", fastest.threads, fastest.spinning)  # type: ignore[arg-type]
            result = paired(raw, texts, url, script, args.slices, args.slice_seconds)
            print(result.summary())
            app, outside, trip = asyncio.run(_own_time("127.0.0.1", port, texts, args.requests))
            print(
                f"service's own time per request ({args.requests} sequential requests, its timing headers): "
                f"{app:.3f} ms in the app beyond tokenization and inference; {outside:.3f} ms outside the app "
                f"(HTTP, the kernel, this client); round trip {trip:.2f} ms"
            )
        finally:
            procs.stop(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
