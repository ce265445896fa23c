"""The latency floor at concurrency 1, in interleaved rounds: the raw engine's batch-1 grid
(every intra-op thread count x spinning setting, no HTTP) against the service's /classify p50
at concurrency 1 (wrk, one keep-alive connection, the client `make bench` uses), int8.

  python -m loadtest.floor [--model minilm|bert-base] [--rounds 4] [--raw-seconds 3]
                           [--service-seconds 8]

Why rounds: on a shared machine the floor itself moves from run to run (the fastest raw
setting measured 2.49 ms in one `make bench` and 3.37 ms in the next), so one pair of
figures says little about the gap between them. Each round measures both, seconds apart,
and prints the gap. The service is started once and kept for every round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from loadtest import bert_base, procs, raw_engine, wrk
from loadtest.texts import short_sentences

MINILM = procs.REPO / "models" / "minilm-sentiment"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("minilm", "bert-base"), default="minilm")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--raw-seconds", type=float, default=3)
    parser.add_argument("--service-seconds", type=float, default=8)
    args = parser.parse_args(argv)
    texts = short_sentences()
    if args.model == "bert-base":
        model, models, env = bert_base.ensure(), bert_base.models_dir(), {"BERTSERVE_VARIANT": "int8"}
    else:
        model, models, env = MINILM, None, {}
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    gaps = []
    with tempfile.TemporaryDirectory() as work:
        script = wrk.write_script(Path(work), "classify", "/classify", [{"inputs": t} for t in texts])
        proc = procs.start(procs.serve_cmd(port, models), env, f"{url}/health/ready", Path(work) / "service.log", 600)
        try:
            for round_ in range(args.rounds):
                grid = raw_engine.batch1_latency(model, "int8", texts, args.raw_seconds)
                fastest = min(grid, key=lambda r: r.p50_ms)
                served = wrk.run(url, script, 1, args.service_seconds)
                if served.errors:
                    raise SystemExit(f"floor: {served.errors} errors at c=1")
                gaps.append(served.p50_ms - fastest.p50_ms)
                settings = " ".join(f"{r.threads}t/{r.spinning} {r.p50_ms:.2f}" for r in grid)
                print(
                    f"round {round_ + 1} ({args.model}): raw {settings}; fastest {fastest.p50_ms:.2f} ms "
                    f"({fastest.threads} threads, {fastest.spinning}); service c=1 p50 {served.p50_ms:.2f} ms; "
                    f"gap {gaps[-1]:+.2f} ms",
                    flush=True,
                )
        finally:
            procs.stop(proc)
    print(f"gap median {statistics.median(gaps):+.2f} ms, range {min(gaps):+.2f} to {max(gaps):+.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
