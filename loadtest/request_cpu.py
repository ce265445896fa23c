"""The service's own CPU per request: what the event loop's thread spends on each request
(HTTP parsing, middleware, routing, validation, the serving layer, the batcher, tokenizing,
JSON, metrics, the access log), apart from the runtime's threads.

  python -m loadtest.request_cpu [--rounds 8] [--seconds 4] [--concurrency 16]
                                 [--tree OTHER_CHECKOUT ...] [--json FILE]

Why per thread: on a shared 2-core machine throughput moves with whatever else runs, but
the CPU time a thread is charged for its work moves far less. Each server's threads are
read from /proc/<pid>/task/<tid>/schedstat (nanoseconds on CPU) before and after a
fixed-length wrk run: the main thread (tid == pid) runs the event loop and so every line of
the service's Python per request; the other threads (the runtime's executor thread and
onnxruntime's intra-op pool; the tokenize pool, idle for short texts) run the model.
Divided by the requests wrk completed.

With `--tree`, a server runs from this checkout and one from each other checkout (a copy
of the package before a change, say), all at once, on the same models and log level (the
default, info: one access line per request, to a file). Each round drives each server in
turn, alternating the order, for a few seconds: medians over rounds are compared in one
run, and a drift in the machine's load falls on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loadtest import procs, wrk
from loadtest.texts import short_sentences

SCENARIOS = {
    "classify": ("/classify", "minilm-sentiment"),
    "tokens": ("/classify/tokens", "minilm-ner"),
}


def thread_times(pid: int) -> dict[int, tuple[str, int]]:
    """Every thread of `pid`: its name and its nanoseconds on CPU so far."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just ended
        out[int(task.name)] = (name, ns)
    return out


def split_cpu(pid: int, before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]) -> dict[str, float]:
    """CPU seconds between two readings, by kind of thread."""
    kinds = {"loop": 0.0, "threads": 0.0}
    for tid, (name, ns) in after.items():
        kinds["loop" if tid == pid else "threads"] += (ns - before.get(tid, (name, 0))[1]) / 1e9
    return kinds


def start(tree: Path, args: argparse.Namespace, work: Path, tag: str) -> tuple[procs.subprocess.Popen[bytes], str]:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"BERTSERVE_LOG_LEVEL": args.log_level, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "service", "serve", "--port", str(port), "--models", str(args.models)]
    with (work / f"server-{tag}.log").open("ab") as out:
        proc = procs.subprocess.Popen(cmd, cwd=tree, env={**os.environ, **env}, stdout=out, stderr=out)
    procs.wait_ready(proc, f"{url}/health/ready")
    return proc, url


def measure(pid: int, url: str, script: Path, args: argparse.Namespace) -> dict[str, float]:
    before = thread_times(pid)
    run = wrk.run(url, script, args.concurrency, args.seconds)
    time.sleep(0.3)  # the last answers are written
    cpu = split_cpu(pid, before, thread_times(pid))
    n = max(1, run.requests)
    return {
        "requests": run.requests,
        "errors": run.errors,
        "rps": run.rps,
        "loop_ms": cpu["loop"] * 1000 / n,
        "threads_ms": cpu["threads"] * 1000 / n,
        "total_ms": sum(cpu.values()) * 1000 / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--models", type=Path, default=procs.REPO / "models")
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to compare")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    trees = [procs.REPO, *(t.resolve() for t in args.tree)]
    sentences = short_sentences(256)
    samples: dict[str, dict[str, list[dict[str, float]]]] = {str(t): {} for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scripts = {
            name: wrk.write_script(work, name, path, [{"inputs": s, "model": model} for s in sentences])
            for name, (path, model) in SCENARIOS.items()
            if not args.only or name in args.only
        }
        servers = {}
        try:
            for i, tree in enumerate(trees):
                servers[tree] = start(tree, args, work, str(i))
            for _proc, url in servers.values():
                for script in scripts.values():
                    wrk.run(url, script, args.concurrency, 2)  # warm connections, allocator, caches
            for round_ in range(args.rounds):
                for name, script in scripts.items():
                    order = trees if round_ % 2 == 0 else trees[::-1]
                    for tree in order:
                        proc, url = servers[tree]
                        figures = measure(proc.pid, url, script, args)
                        samples[str(tree)].setdefault(name, []).append(figures)
                        shown = json.dumps({k: round(v, 3) for k, v in figures.items()})
                        print(f"round {round_} {tree} {name}: {shown}", flush=True)
        finally:
            for proc, _ in servers.values():
                procs.stop(proc)
    report = {
        tree: {
            name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in scenarios.items()
        }
        for tree, scenarios in samples.items()
    }
    # Each other tree's loop time over this checkout's in the same round (run back to back):
    # the machine's drift between rounds cancels out of the ratio.
    here = samples[str(trees[0])]
    ratios = {
        tree: {
            name: statistics.median(o["loop_ms"] / h["loop_ms"] for o, h in zip(runs, here[name], strict=True))
            for name, runs in scenarios.items()
        }
        for tree, scenarios in samples.items()
    }
    print("\nmedians (ms of CPU per request; loop = the event loop's thread)")
    for tree, scenarios in report.items():
        for name, m in scenarios.items():
            print(
                f"  {tree} {name:9s} loop {m['loop_ms']:.3f} (x{ratios[tree][name]:.3f} paired)  "
                f"threads {m['threads_ms']:.3f}  total {m['total_ms']:.3f}  ({m['rps']:.0f} req/s)"
            )
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "medians": report, "paired_loop_ratio": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
