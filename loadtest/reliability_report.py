"""docs/reliability.md from one `python -m loadtest.reliability` run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.reliability_results import OverloadResult, SlowClientResult, SoakResult, StallResult, StormResult

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


def _overload_row(o: OverloadResult) -> str:
    return (
        f"| Overload | {o.rate:.0f} requests/s offered (open loop, about 3x capacity) on {o.workers} connections "
        f"for {o.seconds:.0f} s; queue limit 64 items; request deadline 5 s "
        f"| statuses {o.statuses}; 429 p50 {o.rejected_p50_ms:.1f} ms, p99 {o.rejected_p99_ms:.1f} ms "
        f"(onset, first {o.onset_s:.0f} s: {o.onset_rejected} 429s, p99 {o.onset_rejected_p99_ms:.0f} ms); "
        f"accepted p99 {o.ok_p99_ms:.0f} ms, max {o.ok_max_ms:.0f} ms "
        f"(max {o.ok_served_max_ms:.0f} ms from when the service read it); resident {o.rss_before_mb:.0f} -> "
        f"{o.rss_after_mb:.0f} MB; idle p50 {o.idle_p50_before_ms:.1f} ms before, {o.idle_p50_after_ms:.1f} ms "
        f"right after | {_ok(o.problems())} |"
    )


def _storm_row(st: StormResult) -> str:
    return (
        f"| Retry storm | {st.clients} closed-loop clients (wrk) resending at once whatever the answer, "
        f"for {st.seconds:.0f} s; queue limit {st.queue_items} items; reference: c={st.reference_clients} "
        f"on the same server just before "
        f"| goodput {st.ok_rps:.0f} req/s = {st.goodput:.2f} of the reference's {st.reference_rps:.0f} req/s; "
        f"statuses {st.statuses}; 429 p50 {st.rejected_p50_ms:.1f} ms, p99 {st.rejected_p99_ms:.1f} ms "
        f"(onset, first {st.onset_s:.0f} s: {st.onset_rejected} 429s, p99 {st.onset_rejected_p99_ms:.0f} ms); "
        f"200 p50 {st.ok_p50_ms:.0f} ms, p99 {st.ok_p99_ms:.0f} ms; mean batch {st.mean_batch:.1f}; "
        f"server {st.server_cpu:.2f} cores, wrk {st.wrk_cpu:.2f}; idle p50 {st.idle_p50_after_ms:.1f} ms right "
        f"after | {_ok(st.problems())} |"
    )


def _stall_row(st: StallResult) -> str:
    return (
        f"| Stalled runtime | one batch of {st.items} x 256 tokens ({st.batch_seconds:.2f} s, sized to last "
        f"{st.factor:g}x the stall timeout) with a {st.stall_timeout_s} s stall timeout "
        f'| readiness 503 after {st.seconds_to_unready or 0:.2f} s ("{st.unready_message}"); batch ended '
        f"{st.batch_status}; ready again {st.seconds_to_ready_after_batch or 0:.2f} s after it "
        f"| {_ok(st.problems())} |"
    )


def _slow_rows(slow: list[SlowClientResult]) -> list[str]:
    # The last, the connection cap, is per process: not run with front ends (BERTSERVE_MAX_CONNECTIONS
    # caps each front end, so N of them hold N x the cap).
    expected = [("408", 3), ("408", 3), ("-", 4), ("503", 1)][: len(slow)]
    return [
        f"| Slow client: {r.scenario} | header/body timeout 1 s, keep-alive 2 s, 8 connections max "
        f"| `{r.answer}` after {r.seconds:.2f} s, connection {'closed' if r.closed else 'open'} "
        f"| {_ok(r.problems(status, within))} |"
        for r, (status, within) in zip(slow, expected, strict=True)
    ]


def _soak_row(s: SoakResult) -> str:
    return (
        f"| Soak | {s.seconds:.0f} s of steady load, {s.concurrency} connections, single and 8-text /classify "
        f"| {s.requests} requests, {s.errors} errors, {s.rps:.0f} req/s, p99 {s.p99_ms:.0f} ms; resident "
        f"{min(s.rss_samples_mb):.0f}-{max(s.rss_samples_mb):.0f} MB over {len(s.rss_samples_mb)} samples, growth "
        f"{s.rss_growth_mb:+.1f} MB (last third vs first third) | {_ok(s.problems())} |"
    )


def _strip(entry: dict[str, Any], *derived: str) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in derived}


def measured_rows(res: dict[str, Any]) -> list[str]:
    """One row per scenario in `res` (a run may have left some out)."""
    rows = []
    if "overload" in res:
        rows.append(_overload_row(OverloadResult(**res["overload"])))
    if "storm" in res:
        rows.append(_storm_row(StormResult(**_strip(res["storm"], "goodput"))))
    if "stall" in res:
        rows.append(_stall_row(StallResult(**res["stall"])))
    if "slow_clients" in res:
        rows += _slow_rows([SlowClientResult(**r) for r in res["slow_clients"]])
    if "soak" in res:
        rows.append(_soak_row(SoakResult(**_strip(res["soak"], "rss_growth_mb"))))
    return rows


def write(res: dict[str, Any], path: Path) -> None:
    servers = res.get("api_servers", 1)
    lines = [
        "# Reliability" + (f": {servers} front ends around an engine process" if servers > 1 else ""),
        "",
        *(
            [
                f"`BERTSERVE_API_SERVERS={servers}`: `make reliability` runs every scenario again this way "
                "(`--api-servers`); the connection cap, per front end, is left out.",
                "",
            ]
            if servers > 1
            else []
        ),
        "Each scenario runs against a real `bertserve serve` process with the default models, over",
        "loopback sockets, bounded in time. The measured rows come from one run of",
        "`make reliability` (`python -m loadtest.reliability`, which also writes `reliability.json`);",
        "short versions of the same functions run in `make bench-smoke` (`loadtest/tests/test_reliability.py`).",
        "The load generator (wrk) shares the machine's cores with the server.",
        "",
        "The retry storm measures what the service keeps doing when clients ignore `Retry-After`:",
        "each of 1,500 wrk connections sends its next request the moment any answer arrives.",
        "Goodput is the storm's 200s per second as a share of a c=64 run on the same server just",
        "before. Latency is per status (each request carries its send time as its X-Request-ID,",
        "echoed by the service); the 429 bound applies after the onset, the first seconds in which",
        "every connection's first request lands at once, reported apart.",
        "",
        "## Measured",
        "",
        "| scenario | load or input | measured | result |",
        "|---|---|---|---|",
        *measured_rows(res),
        "",
        "## Checked by the test suite (`make test`)",
        "",
        "| scenario | test | result required |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in TESTED],
        "",
    ]
    path.write_text("\n".join(lines))
