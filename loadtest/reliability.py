"""Reliability scenarios on a real `bertserve serve` process over real sockets, loopback only,
each bounded in time. Used by the e2e tests (short) and by `make reliability` / `make soak`,
which write docs/reliability.md.

  python -m loadtest.reliability [--soak-seconds 180] [--storm-seconds 20] [--only storm ...] [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtest import procs, rawhttp, wrk
from loadtest.reliability_report import write
from loadtest.reliability_results import OverloadResult, SlowClientResult, SoakResult, StallResult, StormResult
from loadtest.texts import short_sentences

__all__ = [
    "STALL_ENV",
    "OverloadResult",
    "Service",
    "SlowClientResult",
    "SoakResult",
    "StallResult",
    "StormResult",
    "connection_cap",
    "overload",
    "slow_clients",
    "soak",
    "stall",
    "storm",
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class Service:
    url: str
    pid: int
    proc: Any

    @classmethod
    def start(cls, env: dict[str, str], log: Path) -> Service:
        port = procs.free_port()
        url = f"http://127.0.0.1:{port}"
        proc = procs.start(procs.serve_cmd(port), env, f"{url}/health/ready", log)
        return cls(url, proc.pid, proc)

    def stop(self) -> None:
        procs.stop(self.proc)


# ------------------------------------------------------------------ overload


async def _idle_p50(client: httpx.AsyncClient, url: str, n: int = 20) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        r = await client.post(f"{url}/classify", json={"inputs": f"a calm request number {i}"})
        r.raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def _overload(
    svc: Service, workers: int, seconds: float, deadline_s: float, rate: float, onset_s: float
) -> OverloadResult:
    """Open loop: `rate` requests per second offered on `workers` connections whatever the
    answers, as independent callers would (a closed loop that resends each 429 at once would
    measure its own retry storm, not the service)."""
    texts = short_sentences(256)
    ok: list[float] = []
    ok_served: list[float] = []  # the service's own x-total-time: from reading the request
    rejected: list[float] = []
    onset_rejected: list[float] = []
    statuses: dict[str, int] = {}
    missing_retry = 0
    host, port = "127.0.0.1", int(svc.url.rsplit(":", 1)[1])
    async with httpx.AsyncClient(timeout=30) as client:
        before_p50 = await _idle_p50(client, svc.url)
    rss_before = procs.tree_rss_mb(svc.pid)
    stop = time.monotonic() + seconds
    onset_end = stop - seconds + onset_s

    interval = workers / rate

    async def worker(w: int) -> None:
        nonlocal missing_retry
        conn = rawhttp.Connection(host, port)
        i = 0
        next_at = time.monotonic() + w * interval / workers
        while time.monotonic() < stop:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            i += 1
            body = {"inputs": texts[(w * 31 + i) % len(texts)]}
            t0 = time.perf_counter()
            in_onset = time.monotonic() < onset_end
            try:
                status, headers, _ = await conn.post("/classify", body, {"X-Request-Timeout": str(deadline_s)})
                key = str(status)
            except (OSError, asyncio.IncompleteReadError) as exc:
                key, headers = type(exc).__name__, {}
                await conn.close()
            elapsed = (time.perf_counter() - t0) * 1000
            statuses[key] = statuses.get(key, 0) + 1
            if key == "200":
                ok.append(elapsed)
                ok_served.append(float(headers["x-total-time"]))
            elif key == "429":
                (onset_rejected if in_onset else rejected).append(elapsed)
                missing_retry += "retry-after" not in headers
        await conn.close()

    await asyncio.gather(*(worker(w) for w in range(workers)))
    rss_after = procs.tree_rss_mb(svc.pid)
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient(timeout=30) as client:
        after_p50 = await _idle_p50(client, svc.url)
    return OverloadResult(
        workers,
        rate,
        seconds,
        statuses,
        percentile(ok, 99),
        max(ok, default=0.0),
        percentile(rejected, 50),
        percentile(rejected, 99),
        missing_retry,
        rss_before,
        rss_after,
        before_p50,
        after_p50,
        onset_s,
        len(onset_rejected),
        percentile(onset_rejected, 99),
        deadline_s,
        max(ok_served, default=0.0),
    )


def overload(
    svc: Service, workers: int = 256, seconds: float = 6, deadline_s: float = 5, rate: float = 1000, onset_s: float = 1
) -> OverloadResult:
    return asyncio.run(_overload(svc, workers, seconds, deadline_s, rate, onset_s))


# ------------------------------------------------------------------ stall


# Room for one batch big enough to outlast the stall timeout on any machine: up to 512
# reviews of the embedding model's 256 tokens, in one request and one batch.
STALL_MAX_ITEMS = 512
STALL_TIMEOUT_S = 0.2
STALL_ENV = {
    "BERTSERVE_STALL_TIMEOUT_S": str(STALL_TIMEOUT_S),
    "BERTSERVE_MAX_BATCH_SIZE": str(STALL_MAX_ITEMS),
    "BERTSERVE_MAX_BATCH_TOKENS": str(STALL_MAX_ITEMS * 256),
    "BERTSERVE_MAX_INPUTS": str(STALL_MAX_ITEMS),
}


def stall(svc: Service, stall_timeout_s: float = STALL_TIMEOUT_S, factor: float = 3) -> StallResult:
    """One batch that runs at least `factor` times the stall timeout: readiness must turn
    503 while it runs and come back when it returns. The batch is sized to the machine, not
    assumed slow: 32 reviews of 256 tokens, doubled until one batch runs long enough (up to
    STALL_MAX_ITEMS; the service runs with STALL_ENV, so a request is one batch)."""
    items = 32
    while True:
        result = _stall_once(svc, items, stall_timeout_s, factor)
        if result.batch_seconds >= factor * stall_timeout_s or items >= STALL_MAX_ITEMS:
            return result
        items = min(2 * items, STALL_MAX_ITEMS)
        time.sleep(0.5)


def _stall_once(svc: Service, items: int, stall_timeout_s: float, factor: float) -> StallResult:
    body = {"inputs": ["a long review that goes on and on about the film, " * 30] * items}
    done: dict[str, Any] = {}

    def send() -> None:
        t0 = time.monotonic()
        r = httpx.post(f"{svc.url}/embed", json=body, timeout=300)
        done["status"], done["at"] = r.status_code, time.monotonic()
        done["inference_s"] = float(r.headers.get("x-inference-time", "0")) / 1000
        done["total_s"] = done["at"] - t0

    sender = threading.Thread(target=send)
    started = time.monotonic()
    sender.start()
    unready_at, message = None, ""
    while sender.is_alive():
        r = httpx.get(f"{svc.url}/health/ready", timeout=5)
        if r.status_code == 503 and unready_at is None:
            unready_at, message = time.monotonic(), r.json()["error"]["message"]
        time.sleep(0.02)
    sender.join()
    ready_at = None
    while time.monotonic() < done["at"] + 10:
        if httpx.get(f"{svc.url}/health/ready", timeout=5).status_code == 200:
            ready_at = time.monotonic()
            break
        time.sleep(0.02)
    return StallResult(
        stall_timeout_s,
        unready_at - started if unready_at else None,
        message,
        done["status"],
        ready_at - done["at"] if ready_at else None,
        items=items,
        batch_seconds=done["inference_s"],
        factor=factor,
    )


# ------------------------------------------------------------------ slow clients


def _exchange(port: int, payload: bytes, wait_s: float) -> SlowClientResult:
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        t0 = time.monotonic()
        sock.sendall(payload)
        data = b""
        closed = False
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except TimeoutError:
            pass
        status = data.split(b"\r\n", 1)[0].decode("latin-1") if data else "(nothing)"
        return SlowClientResult("", status, time.monotonic() - t0, closed)


def slow_clients(svc: Service) -> list[SlowClientResult]:
    port = int(svc.url.rsplit(":", 1)[1])
    cases = [
        ("headers never finished", b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: appl"),
        (
            "body never finished",
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"inputs": ',
        ),
        ("idle keep-alive after a request", b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]
    out = []
    for name, payload in cases:
        result = _exchange(port, payload, 15)
        result.scenario = name
        out.append(result)
    return out


def connection_cap(svc: Service, cap: int) -> SlowClientResult:
    port = int(svc.url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap)]
    try:
        time.sleep(0.2)
        result = _exchange(port, b"", 5)
        result.scenario = f"connection {cap + 1} with {cap} open"
        return result
    finally:
        for s in held:
            s.close()


# ------------------------------------------------------------------ soak


def soak(svc: Service, seconds: float, concurrency: int = 8, work: Path | None = None) -> SoakResult:
    """Moderate steady load (mixed /classify and /embed) while sampling resident memory."""
    work = work or Path("/tmp")
    texts = short_sentences(256)
    bodies: list[dict[str, object]] = [{"inputs": t} for t in texts] + [
        {"inputs": texts[i : i + 8]} for i in range(0, 64, 8)
    ]
    script = wrk.write_script(work, "soak", "/classify", bodies)
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(max(0.5, seconds / 60)):
            samples.append(procs.tree_rss_mb(svc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = wrk.run(svc.url, script, concurrency, seconds)
    finally:
        stop.set()
        sampler.join()
    return SoakResult(seconds, concurrency, result.requests, result.errors, result.rps, result.p99_ms, samples)


# ------------------------------------------------------------------ storm


def storm(
    svc: Service,
    clients: int = 1500,
    seconds: float = 20,
    reference_clients: int = 64,
    reference_seconds: float = 10,
    queue_items: int = 256,
    onset_s: float = 3,
    work: Path | None = None,
) -> StormResult:
    """A retry storm: `clients` closed-loop wrk connections that resend the moment any answer
    comes back, 429 included (no back-off), after a reference run at `reference_clients` on
    the same server. The service should spend its cores on answers, not on refusals: the
    storm's goodput is the share of the reference's throughput it keeps."""
    work = work or Path("/tmp")
    bodies: list[dict[str, object]] = [{"inputs": t} for t in short_sentences(256)]
    script = wrk.write_script(work, "storm", "/classify", bodies, by_status=True, warmup_s=onset_s)
    cpu0 = procs.tree_cpu_seconds(svc.pid)
    reference = wrk.run(svc.url, script, reference_clients, reference_seconds)
    reference_cpu = (procs.tree_cpu_seconds(svc.pid) - cpu0) / reference.seconds
    time.sleep(1)
    batches0 = _batch_totals(svc.url)
    cpu0 = procs.tree_cpu_seconds(svc.pid)
    result = wrk.run(svc.url, script, clients, seconds)
    cpu = (procs.tree_cpu_seconds(svc.pid) - cpu0) / result.seconds
    batches1 = _batch_totals(svc.url)
    time.sleep(1)
    with httpx.Client(timeout=30) as client:
        idle_after = _idle_p50_sync(client, svc.url)
    ok = result.by_status.get("200")
    rejected = result.by_status.get("429")
    onset_ok = result.warmup_by_status.get("200")
    onset_rejected = result.warmup_by_status.get("429")
    ref_ok = reference.by_status.get("200")
    statuses = {k: v.count for k, v in result.by_status.items()}
    for key, v in result.warmup_by_status.items():
        statuses[key] = statuses.get(key, 0) + v.count
    count = batches1[1] - batches0[1]
    return StormResult(
        clients=clients,
        seconds=result.seconds,
        queue_items=queue_items,
        reference_clients=reference_clients,
        reference_rps=(ref_ok.count if ref_ok else 0) / reference.seconds,
        reference_p99_ms=ref_ok.p99_ms if ref_ok else 0.0,
        statuses=dict(sorted(statuses.items())),
        ok_rps=((ok.count if ok else 0) + (onset_ok.count if onset_ok else 0)) / result.seconds,
        ok_p50_ms=ok.p50_ms if ok else 0.0,
        ok_p99_ms=ok.p99_ms if ok else 0.0,
        rejected_p50_ms=rejected.p50_ms if rejected else 0.0,
        rejected_p99_ms=rejected.p99_ms if rejected else 0.0,
        rejected_max_ms=rejected.max_ms if rejected else 0.0,
        onset_s=onset_s,
        onset_rejected=onset_rejected.count if onset_rejected else 0,
        onset_rejected_p99_ms=onset_rejected.p99_ms if onset_rejected else 0.0,
        socket_errors=result.socket_errors,
        server_cpu=cpu,
        wrk_cpu=result.wrk_cpu,
        reference_server_cpu=reference_cpu,
        mean_batch=(batches1[0] - batches0[0]) / count if count else 0.0,
        idle_p50_after_ms=idle_after,
    )


def _batch_totals(url: str) -> tuple[float, float]:
    """Items and batches run so far, over every model (from /metrics)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    totals = [0.0, 0.0]
    for line in text.splitlines():
        for i, name in enumerate(("bertserve_batch_size_sum{", "bertserve_batch_size_count{")):
            if line.startswith(name):
                totals[i] += float(line.rsplit(" ", 1)[1])
    return totals[0], totals[1]


def _idle_p50_sync(client: httpx.Client, url: str, n: int = 20) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        client.post(f"{url}/classify", json={"inputs": f"a calm request number {i}"}).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# ------------------------------------------------------------------ report


SCENARIOS = ("overload", "storm", "stall", "slow_clients", "soak")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--soak-seconds", type=float, default=180)
    parser.add_argument("--storm-seconds", type=float, default=20)
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run these scenarios only")
    parser.add_argument("--out", type=Path, default=procs.REPO / "docs")
    parser.add_argument(
        "--api-servers",
        type=int,
        default=None,
        help="serve with BERTSERVE_API_SERVERS=N (front ends around an engine process); the report is "
        "reliability-N-front-ends.md. The connection cap is per front end, so its scenario is left out",
    )
    args = parser.parse_args(argv)
    servers = {"BERTSERVE_API_SERVERS": str(args.api_servers)} if args.api_servers else {}
    name = f"reliability-{args.api_servers}-front-ends" if args.api_servers else "reliability"
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp())
    results: dict[str, Any] = {}

    def log(msg: str) -> None:
        print(f"reliability: {msg}", file=sys.stderr, flush=True)

    def run(name: str, env: dict[str, str], what: str, scenario: Callable[[Service], Any]) -> None:
        if args.only and name not in args.only:
            return
        log(f"{name}: {what}")
        svc = Service.start({**env, **servers}, work / f"{name}.log")
        try:
            results[name] = scenario(svc)
        finally:
            svc.stop()

    run(
        "overload",
        {"BERTSERVE_MAX_QUEUE_ITEMS": "64"},
        "1,000 requests/s offered (about 3x capacity) on 256 connections, 64-item queue",
        lambda svc: asdict(overload(svc)),
    )

    def run_storm(svc: Service) -> dict[str, Any]:
        st = storm(svc, seconds=args.storm_seconds, work=work)
        return {**asdict(st), "goodput": st.goodput}

    run(
        "storm",
        {"BERTSERVE_MAX_QUEUE_ITEMS": "256"},
        "1,500 closed-loop clients against a 256-item queue, after a c=64 reference",
        run_storm,
    )
    run(
        "stall",
        STALL_ENV,
        f"a batch longer than a {STALL_TIMEOUT_S} s stall timeout",
        lambda svc: asdict(stall(svc)),
    )
    slow_env = {
        "BERTSERVE_HEADER_TIMEOUT_S": "1",
        "BERTSERVE_BODY_TIMEOUT_S": "1",
        "BERTSERVE_KEEP_ALIVE_TIMEOUT_S": "2",
        "BERTSERVE_MAX_CONNECTIONS": "8",
    }
    run(
        "slow_clients",
        slow_env,
        "slow clients and connection cap",
        lambda svc: [asdict(r) for r in slow_clients(svc)] + ([] if servers else [asdict(connection_cap(svc, 8))]),
    )

    def run_soak(svc: Service) -> dict[str, Any]:
        s = soak(svc, args.soak_seconds, work=work)
        return {**asdict(s), "rss_growth_mb": s.rss_growth_mb}

    run("soak", {}, f"{args.soak_seconds:.0f} s of steady load", run_soak)
    results["api_servers"] = args.api_servers or 1
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    write(results, args.out / f"{name}.md")
    log(f"wrote {args.out / f'{name}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
