"""A/B runs: the service under two or more settings, alternated over rounds, medians compared.

  python -m loadtest.ab --a 'BERTSERVE_LOG_LEVEL=info' --b 'BERTSERVE_LOG_LEVEL=warning' \\
      --measure latency throughput cpu [--rounds 3] [--seconds 10] [--route /classify ...] [--json FILE]

An arm is `[LABEL:] NAME=VALUE ...` (`--a`, `--b` and `--arm` each add one, in order; the first
is the reference of the ratios). A variable that some arm sets is unset in the arms that do
not, whatever this shell holds, so the arms differ only by what they say. `{sink}` in a value
stands for a local OTLP/HTTP receiver that counts the spans it is sent (spans per request is
then reported); `tree=PATH` runs that checkout's service (a copy from before a change) on the
same models.

Each round starts a fresh server per arm, the order reversed every other round, so a drift
in the machine's load favours no arm. Per server: its resident memory once ready (memory),
a warm-up at c=8, then per route (real rotten_tomatoes sentences, wrk) a c=1 run (latency) and
a run at --concurrency (throughput), during which the CPU time of the server's threads is
read from /proc (cpu: the event loop's thread apart from the runtime's threads, per
request), then its memory after the load. The server's log goes to a file, as it would to a
container runtime's pipe; its bytes per request are reported. Printed: the median over rounds
of each figure per arm, and each arm's ratio to the first (the median of the per-round
ratios: arms run back to back in a round see the same machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from loadtest import procs, wrk
from loadtest.texts import short_sentences

MEASURES = ("throughput", "latency", "cpu", "memory")
SINK = "{sink}"


@dataclass(frozen=True)
class Arm:
    label: str
    env: dict[str, str]
    tree: Path = procs.REPO


def parse_arm(spec: str) -> Arm:
    """`[LABEL:] NAME=VALUE ... [tree=PATH]`; without a label the spec itself names the arm."""
    items = shlex.split(spec)
    label = items.pop(0)[:-1] if items and items[0].endswith(":") else (spec.strip() or "default")
    env: dict[str, str] = {}
    tree = procs.REPO
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{item!r} is not NAME=VALUE")
        if name == "tree":
            tree = Path(value).resolve()
        else:
            env[name] = value
    return Arm(label, env, tree)


@dataclass
class Sink:
    """An OTLP/HTTP endpoint that keeps the payloads and answers each at once (a thread of
    this process, idle while wrk runs; it shares the cores as a collector on the host would)."""

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


def thread_cpu(pid: int) -> dict[int, float]:
    """Seconds on CPU so far of each thread of `pid` (schedstat: nanoseconds, finer than ticks)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just ended
    return out


def arm_env(arm: Arm, named: set[str], sink: Sink | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in named}
    env.update({k: v.replace(SINK, sink.url) if sink else v for k, v in arm.env.items()})
    if arm.tree != procs.REPO:
        env["PYTHONPATH"] = str(arm.tree)
    return env


@contextmanager
def server(arm: Arm, env: dict[str, str], models: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(procs.serve_cmd(port, models), cwd=arm.tree, env=env, stdout=out, stderr=out)
    try:
        procs.wait_ready(proc, f"{url}/health/ready", 600)
        yield proc, url
    finally:
        procs.stop(proc)  # the service flushes its spans on the way out


def measure(
    arm: Arm, env: dict[str, str], scripts: dict[str, Path], args: argparse.Namespace, sink: Sink | None, log: Path
) -> dict[str, float]:
    row: dict[str, float] = {}
    sent = 0
    with server(arm, env, args.models, log) as (proc, url):
        if "memory" in args.measure:
            row["rss_ready_mb"] = procs.rss_mb(proc.pid)
        sent += wrk.run(url, next(iter(scripts.values())), 8, args.warmup).requests  # connections, allocator
        logged0 = log.stat().st_size
        for route, script in scripts.items():
            at = f"{route} " if len(scripts) > 1 else ""
            if "latency" in args.measure:
                one = wrk.run(url, script, 1, args.seconds)
                sent += one.requests
                row |= {f"{at}c1_p50_ms": one.p50_ms, f"{at}c1_p99_ms": one.p99_ms, f"{at}c1_errors": one.errors}
            if {"throughput", "cpu"} & set(args.measure):
                before = thread_cpu(proc.pid)
                run = wrk.run(url, script, args.concurrency, args.seconds)
                time.sleep(0.3)  # the last answers are written
                used = {tid: s - before.get(tid, 0.0) for tid, s in thread_cpu(proc.pid).items()}
                sent += run.requests
                row |= {f"{at}rps": run.rps, f"{at}p50_ms": run.p50_ms, f"{at}p99_ms": run.p99_ms}
                row[f"{at}errors"] = run.errors
                if "cpu" in args.measure:
                    n, loop = max(1, run.requests), used.get(proc.pid, 0.0)  # the main thread runs the event loop
                    row[f"{at}cpu_ms_per_request"] = sum(used.values()) * 1000 / n
                    row[f"{at}loop_cpu_ms_per_request"] = loop * 1000 / n
                    row[f"{at}threads_cpu_ms_per_request"] = (sum(used.values()) - loop) * 1000 / n
        row["log_bytes_per_request"] = (log.stat().st_size - logged0) / max(1, sent)
        if "memory" in args.measure:
            row["rss_after_load_mb"] = procs.rss_mb(proc.pid)
    if sink is not None:
        row["spans_per_request"] = sink.take_spans() / max(1, sent)
    return row


def report(arms: list[Arm], runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    labels = [a.label for a in arms]
    first = runs[labels[0]]
    medians = {label: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for label, rows in runs.items()}
    paired = {
        label: {
            k: statistics.median(r[k] / f[k] if f[k] else float("nan") for r, f in zip(rows, first, strict=True))
            for k in rows[0]
        }
        for label, rows in runs.items()
    }
    width = max(12, *(len(label) + 2 for label in labels))
    keys = list(medians[labels[0]])
    key_width = max(len(k) for k in keys) + 8
    print(f"medians over {len(first)} round(s); ratio: the median of per-round ratios to {labels[0]!r}")
    print(f"{'figure':<{key_width}}" + "".join(f"{label:>{width}}" for label in labels))
    for key in keys:
        print(f"{key:<{key_width}}" + "".join(f"{medians[label][key]:>{width}.3f}" for label in labels))
    for key in keys:
        if "errors" not in key and all(f[key] for f in first):  # a ratio to zero says nothing
            print(f"{key + ' ratio':<{key_width}}" + "".join(f"{paired[label][key]:>{width}.3f}" for label in labels))
    return {"medians": medians, "paired_ratios": paired}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", "--b", "--arm", dest="arms", type=parse_arm, action="append", required=True)
    parser.add_argument("--measure", nargs="+", choices=MEASURES, default=["throughput"])
    parser.add_argument("--route", dest="routes", action="append", help="POSTed {'inputs': sentence}; /classify")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10, help="per wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds at c=8 before measuring")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--models", type=Path, default=procs.REPO / "models")
    parser.add_argument("--json", type=Path, help="also write every round's figures and the medians here")
    args = parser.parse_args(argv)
    arms: list[Arm] = args.arms
    if len(arms) < 2 or len({a.label for a in arms}) < len(arms):
        parser.error("give two or more arms, each with its own label")
    named = {name for arm in arms for name in arm.env}
    sink = Sink() if any(SINK in v for arm in arms for v in arm.env.values()) else None
    runs: dict[str, list[dict[str, float]]] = {arm.label: [] for arm in arms}
    bodies: list[dict[str, object]] = [{"inputs": t} for t in short_sentences()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        routes = args.routes or ["/classify"]
        scripts = {r: wrk.write_script(work, r.strip("/").replace("/", "_"), r, bodies) for r in routes}
        for r in range(args.rounds):
            for i, arm in enumerate(arms if r % 2 == 0 else arms[::-1]):
                row = measure(arm, arm_env(arm, named, sink), scripts, args, sink, work / f"server-{r}-{i}.log")
                runs[arm.label].append(row)
                shown = json.dumps({k: round(v, 3) for k, v in row.items()})
                print(f"ab: round {r + 1} {arm.label}: {shown} load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    result = report(arms, runs)
    if args.json:
        described = {a.label: {"env": a.env, "tree": str(a.tree)} for a in arms}
        args.json.write_text(json.dumps({"arms": described, "rounds": runs, **result}, indent=1))
    errors = sum(v for rows in runs.values() for row in rows for k, v in row.items() if "errors" in k)
    if errors:
        print(f"ab: {errors:.0f} failed requests: the figures are not comparable", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
