"""docs/reliability.md from one `python -m loadtest.reliability` run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TESTED = [
    (
        "Schema fuzzing (schemathesis, positive and negative data, every route)",
        "`tests/e2e/test_fuzz.py`",
        "no 5xx; every response matches the OpenAPI schema",
    ),
    (
        "Malformed bodies: invalid UTF-8, 100k-deep nesting, NaN/Infinity, wrong types, empty",
        "`tests/integration/test_hardening.py`",
        "422 in the envelope, never 500",
    ),
    (
        "Odd text: control characters, RTL marks, mixed scripts, emoji, a 19,999-character word",
        "`tests/integration/test_hardening.py`",
        "200 with real answers",
    ),
    (
        "Body over the limit, with and without Content-Length",
        "`tests/integration/test_api.py`",
        "413, read no further than the limit",
    ),
    (
        "Poison input: a graph that fails for some token ids, sharing a batch with a good input",
        "`tests/integration/test_hardening.py`",
        "the good input 200, the poison a generic 500 with the request id",
    ),
    (
        "Missing, truncated, mismatched (manifest vs graph) and corrupted (checksum) models at start-up",
        "`tests/e2e/test_startup.py`",
        "exit 2 with one line naming the problem",
    ),
    (
        "API keys (list and file), protected metrics, CORS on and off",
        "`tests/integration/test_hardening.py`",
        "401 in the envelope; health open; CORS only for configured origins",
    ),
    (
        "SIGTERM with a request in flight",
        "`tests/e2e/test_drain.py`",
        "readiness and new requests 503, the accepted request 200, exit 0",
    ),
    (
        "Rolling restart of two replicas behind nginx under steady load",
        "`tests/e2e/test_load_balanced.py`",
        "zero failed requests",
    ),
]


def _ok(problems: list[str]) -> str:
    return "pass" if not problems else "FAIL: " + "; ".join(problems)


def write(res: dict[str, Any], path: Path) -> None:
    from loadtest.reliability import OverloadResult, SlowClientResult, SoakResult, StallResult

    o = OverloadResult(**res["overload"])
    st = StallResult(**res["stall"])
    soak = res["soak"]
    s = SoakResult(**{k: v for k, v in soak.items() if k != "rss_growth_mb"})
    slow = [SlowClientResult(**r) for r in res["slow_clients"]]
    expected = [("408", 3), ("408", 3), ("-", 4), ("503", 1)]
    lines = [
        "# Reliability",
        "",
        "Each scenario runs against a real `bertserve serve` process with the default models, over",
        "loopback sockets, bounded in time. The measured rows come from one run of",
        "`make reliability` (`python -m loadtest.reliability`, which also writes `reliability.json`);",
        "short versions of the same functions run in `make test` (`tests/e2e/test_reliability.py`).",
        "",
        "## Measured",
        "",
        "| scenario | load or input | measured | result |",
        "|---|---|---|---|",
        f"| Overload | {o.rate:.0f} requests/s offered (open loop, about 3x capacity) on {o.workers} connections "
        f"for {o.seconds:.0f} s; queue limit 64 items; request deadline 5 s "
        f"| statuses {o.statuses}; 429 p50 {o.rejected_p50_ms:.1f} ms, p99 {o.rejected_p99_ms:.1f} ms; "
        f"accepted p99 {o.ok_p99_ms:.0f} ms, max {o.ok_max_ms:.0f} ms; resident {o.rss_before_mb:.0f} -> "
        f"{o.rss_after_mb:.0f} MB; idle p50 {o.idle_p50_before_ms:.1f} ms before, {o.idle_p50_after_ms:.1f} ms "
        f"right after | {_ok(o.problems())} |",
        f"| Stalled runtime | one batch of 64 x 256 tokens with a {st.stall_timeout_s} s stall timeout "
        f'| readiness 503 after {st.seconds_to_unready or 0:.2f} s ("{st.unready_message}"); batch ended '
        f"{st.batch_status}; ready again {st.seconds_to_ready_after_batch or 0:.2f} s after it "
        f"| {_ok(st.problems())} |",
    ]
    for r, (status, within) in zip(slow, expected, strict=True):
        lines.append(
            f"| Slow client: {r.scenario} | header/body timeout 1 s, keep-alive 2 s, 8 connections max "
            f"| `{r.answer}` after {r.seconds:.2f} s, connection {'closed' if r.closed else 'open'} "
            f"| {_ok(r.problems(status, within))} |"
        )
    lines += [
        f"| Soak | {s.seconds:.0f} s of steady load, {s.concurrency} connections, single and 8-text /classify "
        f"| {s.requests} requests, {s.errors} errors, {s.rps:.0f} req/s, p99 {s.p99_ms:.0f} ms; resident "
        f"{min(s.rss_samples_mb):.0f}-{max(s.rss_samples_mb):.0f} MB over {len(s.rss_samples_mb)} samples, growth "
        f"{s.rss_growth_mb:+.1f} MB (last third vs first third) | {_ok(s.problems())} |",
        "",
        "## Checked by the test suite (`make test`)",
        "",
        "| scenario | test | result required |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in TESTED],
        "",
    ]
    path.write_text("\n".join(lines))
