"""Resident memory of the service with the default models, its sessions sharing each model's
weights (the default) against one copy per session, in alternated rounds; and the saturated
throughput of each route meanwhile, to show the sharing costs no speed.

  python -m loadtest.memory [--rounds 2] [--seconds 4]

Per round and setting: a fresh server; its resident memory once ready, then after wrk at
c=64 on /classify, /embed and /classify/tokens in turn (real sentences).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from loadtest import procs, wrk
from loadtest.texts import short_sentences

ROUTES = ("/classify", "/embed", "/classify/tokens")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4)
    args = parser.parse_args(argv)
    texts = short_sentences()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bodies: list[dict[str, object]] = [{"inputs": t} for t in texts]
        scripts = {r: wrk.write_script(work, r.strip("/").replace("/", "_"), r, bodies) for r in ROUTES}
        for round_ in range(args.rounds):
            for share in ("true", "false"):
                port = procs.free_port()
                url = f"http://127.0.0.1:{port}"
                started = time.monotonic()
                env = {"BERTSERVE_SHARE_WEIGHTS": share}
                proc = procs.start(procs.serve_cmd(port), env, f"{url}/health/ready", work / "service.log", 600)
                try:
                    ready_s = time.monotonic() - started
                    ready_mb = procs.rss_mb(proc.pid)
                    rates = []
                    for route, script in scripts.items():
                        result = wrk.run(url, script, 64, args.seconds)
                        if result.errors:
                            raise SystemExit(f"memory: {result.errors} errors on {route}")
                        rates.append(f"{route} {result.rps:.0f}")
                    print(
                        f"round {round_ + 1} share_weights={share}: ready in {ready_s:.1f} s at {ready_mb:.0f} MB, "
                        f"{procs.rss_mb(proc.pid):.0f} MB after load; req/s at c=64: {', '.join(rates)}",
                        flush=True,
                    )
                finally:
                    procs.stop(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
