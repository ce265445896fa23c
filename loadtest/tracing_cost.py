"""What tracing costs: saturated `/classify` with the OTEL_* variables unset, set but off
(OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none, each beside an endpoint), and on
(exporting OTLP/HTTP to a local sink), in one run.

  python -m loadtest.tracing_cost [--rounds 3] [--seconds 10] [--json FILE] [--smoke]

Each round starts a server per arm in turn, on the default models (the order reverses
between rounds, so a drift in the machine's load favours no arm), warms it up, then drives
it with wrk at c=64 with real sentences: throughput, p50 and p99, and the server's CPU time
per request. Reported: the median over rounds of each figure, and its ratio to the unset
arm. The sink (a thread of this process, idle while wrk runs) answers every export at once
and counts the spans afterwards, so each arm is shown to have exported what it should: none
when off, four per one-text request when on (the request, tokenize, queue, inference).
It shares the machine's cores with the server, as a collector on the same host would; one
elsewhere would take less from it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from loadtest import procs, wrk
from loadtest.texts import short_sentences

CONCURRENCY = 64
SINK = "SINK"  # stands for the sink's URL in ARMS
ARMS: dict[str, dict[str, str]] = {
    "unset": {},
    "sdk-disabled": {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": SINK},
    "exporter-none": {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": SINK},
    "on": {"OTEL_EXPORTER_OTLP_ENDPOINT": SINK},
}


@dataclass
class Sink:
    """An OTLP/HTTP endpoint that keeps the payloads and answers each at once."""

    bodies: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a collector offers

            def do_POST(self) -> None:
                sink.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take_spans(self) -> int:
        """Spans received since the last call (decoded now, after the measurement)."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        bodies, self.bodies = self.bodies, []
        count = 0
        for body in bodies:
            request = ExportTraceServiceRequest.FromString(body)
            count += sum(len(s.spans) for rs in request.resource_spans for s in rs.scope_spans)
        return count


def measure(arm: str, script: Path, seconds: float, warmup_s: float, sink: Sink, work: Path) -> dict[str, float]:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: sink.url if v == SINK else v for k, v in ARMS[arm].items()}
    proc = procs.start(procs.serve_cmd(port), env, f"{url}/health/ready", work / f"server-{arm}.log")
    try:
        warm = wrk.run(url, script, 8, warmup_s)  # the connections, the allocator, the first batches
        cpu0 = procs.cpu_seconds(proc.pid)
        run = wrk.run(url, script, CONCURRENCY, seconds)
        cpu = procs.cpu_seconds(proc.pid) - cpu0
    finally:
        procs.stop(proc)  # the service flushes its spans on the way out
    spans = sink.take_spans()
    return {
        "rps": run.rps,
        "p50_ms": run.p50_ms,
        "p99_ms": run.p99_ms,
        "errors": run.errors,
        "server_cpu": cpu / run.seconds,
        "server_cpu_ms_per_request": cpu * 1000 / max(1, run.requests),
        "spans_per_request": spans / max(1, warm.requests + run.requests),
    }


def report(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    medians = {arm: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for arm, rows in runs.items()}
    arms = list(medians)
    print(f"/classify at c={CONCURRENCY}, medians over {len(runs[arms[0]])} round(s); ratio: arm / unset")
    print(f"{'figure':<28}" + "".join(f"{arm:>15}" for arm in arms))
    for key in medians[arms[0]]:
        print(f"{key:<28}" + "".join(f"{medians[arm][key]:>15.3f}" for arm in arms))
    base = medians.get("unset")
    if base:
        for key in ("rps", "server_cpu_ms_per_request"):
            ratios = "".join(f"{medians[a][key] / base[key] if base[key] else float('nan'):>15.3f}" for a in arms)
            print(f"{key + ' ratio':<28}{ratios}")
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--smoke", action="store_true", help="one round of 2 s per arm: checks that it runs")
    args = parser.parse_args(argv)
    rounds, seconds, warmup_s = (1, 2.0, 1.0) if args.smoke else (args.rounds, args.seconds, 2.0)
    for name in [n for n in os.environ if n.startswith(("OTEL_", "FASTAPI_OTEL"))]:
        del os.environ[name]  # "unset" means unset: nothing inherited from this shell
    sink = Sink()
    runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in args.arms}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = wrk.write_script(work, "classify", "/classify", [{"inputs": t} for t in short_sentences()])
        for r in range(rounds):
            for arm in args.arms if r % 2 == 0 else args.arms[::-1]:
                row = measure(arm, script, seconds, warmup_s, sink, work)
                runs[arm].append(row)
                load = os.getloadavg()[0]
                print(f"tracing_cost: round {r + 1} {arm:<13} {json.dumps(row)} load {load:.1f}", file=sys.stderr)
    medians = report(runs)
    if args.json:
        args.json.write_text(json.dumps({"rounds": runs, "medians": medians}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
