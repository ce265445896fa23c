"""The latency floor at concurrency 1, in interleaved rounds: the raw engine's batch-1 grid
(every intra-op thread count x spinning setting, no HTTP) against the service's /classify p50
at concurrency 1 (keep-alive, one request at a time), on MiniLM int8 with the default models.

  python -m loadtest.floor [--rounds 4] [--raw-seconds 3] [--service-seconds 8]

Why rounds: on a shared machine the floor itself moves from run to run (the fastest raw
setting measured 2.49 ms in one `make bench` and 3.37 ms in the next), so one pair of
figures says little about the gap between them. Each round measures both, minutes apart at
most, and prints the gap.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time

from loadtest import procs, raw_engine
from loadtest.texts import short_sentences

MODEL = procs.REPO / "models" / "minilm-sentiment"


def service_c1_p50(texts: list[str], seconds: float) -> float:
    port = procs.free_port()
    proc = procs.start(procs.serve_cmd(port), {}, f"http://127.0.0.1:{port}/health/ready", None)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        latencies: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            body = json.dumps({"inputs": texts[len(latencies) % len(texts)]})
            t0 = time.perf_counter()
            conn.request("POST", "/classify", body, {"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"floor: /classify answered {response.status}")
            latencies.append((time.perf_counter() - t0) * 1000)
        return statistics.median(latencies)
    finally:
        procs.stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--raw-seconds", type=float, default=3)
    parser.add_argument("--service-seconds", type=float, default=8)
    args = parser.parse_args(argv)
    texts = short_sentences()
    gaps = []
    for round_ in range(args.rounds):
        grid = raw_engine.batch1_latency(MODEL, "int8", texts, args.raw_seconds)
        fastest = min(grid, key=lambda r: r.p50_ms)
        served = service_c1_p50(texts, args.service_seconds)
        gaps.append(served - fastest.p50_ms)
        settings = " ".join(f"{r.threads}t/{r.spinning} {r.p50_ms:.2f}" for r in grid)
        print(
            f"round {round_ + 1}: raw {settings}; fastest {fastest.p50_ms:.2f} ms ({fastest.threads} threads, "
            f"{fastest.spinning}); service c=1 p50 {served:.2f} ms; gap {gaps[-1]:+.2f} ms",
            flush=True,
        )
    print(f"gap median {statistics.median(gaps):+.2f} ms, range {min(gaps):+.2f} to {max(gaps):+.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
