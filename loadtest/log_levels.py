"""What the access log costs: `/classify` at log level info (the default: one JSON line per
request, written from the event loop) against warning (no access line), in one run.

  python -m loadtest.log_levels [--rounds 3] [--seconds 10] [--json FILE]

Each round starts a server at each level in turn (the order alternates between rounds, so
a drift in the machine's load does not favour one level) and measures c=1 (latency) and
c=64 (saturated throughput) with wrk and real sentences, and the CPU time the event loop's
thread spends per request at c=64 (where the access line is formatted and written; less
sensitive than latency to other load on the machine). The server's log goes to a file, as
it would to a container runtime's pipe. Reported: the median over rounds of each figure,
and their ratio, info / warning.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from loadtest import procs, wrk
from loadtest.texts import short_sentences

LEVELS = ("info", "warning")


def measure(level: str, script: Path, seconds: float, work: Path) -> dict[str, float]:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / f"server-{level}.log"
    proc = procs.start(procs.serve_cmd(port), {"BERTSERVE_LOG_LEVEL": level}, f"{url}/health/ready", log)
    try:
        wrk.run(url, script, 8, 2)  # warm the connections and the allocator
        size0 = log.stat().st_size
        one = wrk.run(url, script, 1, seconds)
        cpu0, loop0 = procs.cpu_seconds(proc.pid), procs.cpu_seconds(proc.pid, proc.pid)
        many = wrk.run(url, script, 64, seconds)
        cpu = (procs.cpu_seconds(proc.pid) - cpu0) / many.seconds
        loop_ms = (procs.cpu_seconds(proc.pid, proc.pid) - loop0) * 1000 / max(1, many.requests)
        logged = log.stat().st_size - size0
    finally:
        procs.stop(proc)
    return {
        "c1_p50_ms": one.p50_ms,
        "c1_p99_ms": one.p99_ms,
        "c1_rps": one.rps,
        "c64_rps": many.rps,
        "c64_p99_ms": many.p99_ms,
        "c64_server_cpu": cpu,
        "c64_loop_cpu_ms_per_request": loop_ms,  # the event loop's thread: where the access line is written
        "log_bytes_per_request": logged / max(1, one.requests + many.requests),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {level: [] for level in LEVELS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = wrk.write_script(work, "classify", "/classify", [{"inputs": t} for t in short_sentences()])
        for r in range(args.rounds):
            order = LEVELS if r % 2 == 0 else LEVELS[::-1]
            for level in order:
                row = measure(level, script, args.seconds, work)
                runs[level].append(row)
                load = os.getloadavg()[0]
                print(f"log_levels: round {r + 1} {level:<7} {json.dumps(row)} load {load:.1f}", file=sys.stderr)
    medians = {level: {k: statistics.median(row[k] for row in rows) for k in rows[0]} for level, rows in runs.items()}
    print(f"{'figure':<24} {'info':>10} {'warning':>10} {'info/warning':>13}")
    for key in medians["info"]:
        info, warning = medians["info"][key], medians["warning"][key]
        ratio = info / warning if warning else float("nan")
        print(f"{key:<24} {info:>10.2f} {warning:>10.2f} {ratio:>13.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rounds": runs, "medians": medians}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
