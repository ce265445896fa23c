"""The long-inputs part of `make bench`: a text read whole in W windows should cost about W
one-window requests.

Both runs use the same IMDB reviews longer than the classifier's max length on /classify
(the default models): once cut to their first window (`truncate`, one 256-token window a
request), once read whole with `stride` 32. Saturated throughput is counted in windows per
second: requests per second times the windows each request took (the service's own split,
service/runtime/windows.py, computed here on the model's tokenizer).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest import procs, wrk
from loadtest.texts import long_reviews
from service.manifest import Manifest
from service.runtime.tokenizer import TextEncoder

CLASSIFIER = "minilm-sentiment"
STRIDE = 32
TARGET = 0.95  # windows/s read whole against one-window requests, at least
CONCURRENCY = 16

Sweep = Callable[[str, int, Path, list[int], float, str | None], list[Any]]


def _long_texts(model: Path, count: int = 400) -> tuple[list[str], float]:
    """Reviews over the max length, and their mean windows at STRIDE."""
    encoder = TextEncoder(model / "tokenizer.json", Manifest.read(model).max_length)
    windows = encoder.token_windows()
    texts = [t for t in long_reviews(count) if len(t) < 20_000]
    splits = windows.split(texts, STRIDE)
    chosen = [(t, len(s.windows)) for t, s in zip(texts, splits, strict=True) if len(s.windows) > 1]
    return [t for t, _ in chosen], sum(w for _, w in chosen) / len(chosen)


def run(sweep: Sweep, seconds: float, concurrency: list[int], work: Path) -> dict[str, Any]:
    model = procs.REPO / "models" / CLASSIFIER
    texts, mean_windows = _long_texts(model)
    scripts = {
        "first window": wrk.write_script(work, "long-cut", "/classify", [{"inputs": t} for t in texts]),
        "read whole": wrk.write_script(
            work, "long-whole", "/classify", [{"inputs": t, "stride": STRIDE} for t in texts]
        ),
    }
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = procs.start(procs.serve_cmd(port), {}, f"{url}/health/ready", work / "service-long.log")
    out: dict[str, Any] = {"texts": len(texts), "mean_windows": round(mean_windows, 2), "stride": STRIDE, "rows": {}}
    try:
        for name, script in scripts.items():
            print(f"bench: long inputs, {name}", file=sys.stderr, flush=True)
            out["rows"][name] = sweep(url, proc.pid, script, concurrency, seconds, CLASSIFIER)
    finally:
        procs.stop(proc)
    return out


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool]]:
    cut = max(s["result"]["rps"] for s in res["rows"]["first window"])
    whole = max(s["result"]["rps"] for s in res["rows"]["read whole"]) * res["mean_windows"]
    ratio = whole / cut if cut else 0.0
    return [
        (
            f"long inputs read whole (stride {res['stride']}): windows/s >= {TARGET} x one-window requests' req/s",
            f"{ratio:.2f} x ({whole:.0f} windows/s at {res['mean_windows']:.2f} windows a review vs {cut:.0f})",
            ratio >= TARGET,
        )
    ]


def section(res: dict[str, Any], table: Callable[[list[dict[str, Any]]], list[str]]) -> list[str]:
    lines = [
        "",
        "## Long inputs: read whole in windows against one window a request",
        "",
        f"{res['texts']} IMDB reviews longer than 256 tokens on `/classify` (minilm-sentiment): cut to their",
        f"first window, then read whole with `stride` {res['stride']} ({res['mean_windows']:.2f} windows a review",
        "on average, each window one queue item). Mean batch counts windows.",
    ]
    for name in ("first window", "read whole"):
        lines += ["", f"{name}:", "", *table(res["rows"][name])]
    return lines
