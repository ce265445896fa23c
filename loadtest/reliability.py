"""Reliability scenarios on a real `bertserve serve` process over real sockets, loopback only,
each bounded in time. Used by the e2e tests (short) and by `make reliability` / `make soak`,
which write docs/reliability.md.

  python -m loadtest.reliability [--soak-seconds 180] [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtest import procs, rawhttp, wrk
from loadtest.texts import short_sentences


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
        proc = procs.start(procs.serve_cmd(port), {"BERTSERVE_LOG_LEVEL": "warning", **env}, f"{url}/health/ready", log)
        return cls(url, proc.pid, proc)

    def stop(self) -> None:
        procs.stop(self.proc)


# ------------------------------------------------------------------ overload


@dataclass
class OverloadResult:
    workers: int
    rate: float
    seconds: float
    statuses: dict[str, int]
    ok_p99_ms: float
    ok_max_ms: float
    rejected_p50_ms: float
    rejected_p99_ms: float
    retry_after_missing: int
    rss_before_mb: float
    rss_after_mb: float
    idle_p50_before_ms: float
    idle_p50_after_ms: float

    def problems(self) -> list[str]:
        out = []
        if set(self.statuses) - {"200", "429"}:
            out.append(f"statuses other than 200/429: {self.statuses}")
        if not self.statuses.get("429") or not self.statuses.get("200"):
            out.append("expected both accepted (200) and refused (429) requests")
        # The load generator shares the 2 cores with the server here: bounds with that margin.
        if self.rejected_p50_ms > 50 or self.rejected_p99_ms > 250:
            out.append(f"429 p50 {self.rejected_p50_ms:.0f} ms / p99 {self.rejected_p99_ms:.0f} ms (> 50 / 250 ms)")
        if self.retry_after_missing:
            out.append(f"{self.retry_after_missing} 429s without Retry-After")
        if self.ok_max_ms > 5000:
            out.append(f"an accepted request took {self.ok_max_ms:.0f} ms, past its 5 s deadline")
        if self.rss_after_mb - self.rss_before_mb > 100:
            out.append(f"resident memory grew {self.rss_after_mb - self.rss_before_mb:.0f} MB")
        if self.idle_p50_after_ms > 2 * self.idle_p50_before_ms + 5:
            out.append(f"no recovery: idle p50 {self.idle_p50_before_ms:.1f} -> {self.idle_p50_after_ms:.1f} ms")
        return out


async def _idle_p50(client: httpx.AsyncClient, url: str, n: int = 20) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        r = await client.post(f"{url}/classify", json={"inputs": f"a calm request number {i}"})
        r.raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def _overload(svc: Service, workers: int, seconds: float, deadline_s: float, rate: float) -> OverloadResult:
    """Open loop: `rate` requests per second offered on `workers` connections whatever the
    answers, as independent callers would (a closed loop that resends each 429 at once would
    measure its own retry storm, not the service)."""
    texts = short_sentences(256)
    ok: list[float] = []
    rejected: list[float] = []
    statuses: dict[str, int] = {}
    missing_retry = 0
    host, port = "127.0.0.1", int(svc.url.rsplit(":", 1)[1])
    async with httpx.AsyncClient(timeout=30) as client:
        before_p50 = await _idle_p50(client, svc.url)
    rss_before = procs.rss_mb(svc.pid)
    stop = time.monotonic() + seconds

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
            elif key == "429":
                rejected.append(elapsed)
                missing_retry += "retry-after" not in headers
        await conn.close()

    await asyncio.gather(*(worker(w) for w in range(workers)))
    rss_after = procs.rss_mb(svc.pid)
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
    )


def overload(
    svc: Service, workers: int = 256, seconds: float = 6, deadline_s: float = 5, rate: float = 1000
) -> OverloadResult:
    return asyncio.run(_overload(svc, workers, seconds, deadline_s, rate))


# ------------------------------------------------------------------ stall


@dataclass
class StallResult:
    stall_timeout_s: float
    seconds_to_unready: float | None
    unready_message: str
    batch_status: int
    seconds_to_ready_after_batch: float | None

    def problems(self) -> list[str]:
        out = []
        if self.seconds_to_unready is None or "stalled" not in self.unready_message:
            out.append("readiness never reported the stall")
        if self.batch_status != 200:
            out.append(f"the long batch ended {self.batch_status}")
        if self.seconds_to_ready_after_batch is None or self.seconds_to_ready_after_batch > 2:
            out.append("readiness did not come back within 2 s of the batch returning")
        return out


def stall(svc: Service, stall_timeout_s: float) -> StallResult:
    """A batch that runs far longer than the stall timeout (64 reviews of 256 tokens on 2 cores):
    readiness must turn 503 while it runs and come back when it returns."""
    body = {"inputs": ["a long review that goes on and on about the film, " * 30] * 64}
    done: dict[str, Any] = {}

    def send() -> None:
        done["status"] = httpx.post(f"{svc.url}/embed", json=body, timeout=120).status_code
        done["at"] = time.monotonic()

    sender = threading.Thread(target=send)
    started = time.monotonic()
    sender.start()
    unready_at, message = None, ""
    while sender.is_alive():
        r = httpx.get(f"{svc.url}/health/ready", timeout=5)
        if r.status_code == 503 and unready_at is None:
            unready_at, message = time.monotonic(), r.json()["error"]["message"]
        time.sleep(0.05)
    sender.join()
    ready_at = None
    while time.monotonic() < done["at"] + 10:
        if httpx.get(f"{svc.url}/health/ready", timeout=5).status_code == 200:
            ready_at = time.monotonic()
            break
        time.sleep(0.05)
    return StallResult(
        stall_timeout_s,
        unready_at - started if unready_at else None,
        message,
        done["status"],
        ready_at - done["at"] if ready_at else None,
    )


# ------------------------------------------------------------------ slow clients


@dataclass
class SlowClientResult:
    scenario: str
    answer: str
    seconds: float
    closed: bool

    def problems(self, status: str, within_s: float) -> list[str]:
        out = []
        if not self.answer.startswith(f"HTTP/1.1 {status}") and not (
            status == "-" and self.answer.startswith("HTTP/1.1 200")
        ):
            out.append(f"{self.scenario}: answered {self.answer!r}, expected {status}")
        if not self.closed or self.seconds > within_s:
            out.append(
                f"{self.scenario}: connection {'closed' if self.closed else 'still open'} after {self.seconds:.1f} s"
            )
        return out


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


@dataclass
class SoakResult:
    seconds: float
    concurrency: int
    requests: int
    errors: int
    rps: float
    p99_ms: float
    rss_samples_mb: list[float] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        if self.errors:
            out.append(f"{self.errors} errors")
        if self.rss_growth_mb > 30:
            out.append(f"resident memory grew {self.rss_growth_mb:.0f} MB")
        return out

    @property
    def rss_growth_mb(self) -> float:
        """Last third against first third (after warm-up), medians: noise-resistant."""
        third = max(1, len(self.rss_samples_mb) // 3)
        return statistics.median(self.rss_samples_mb[-third:]) - statistics.median(self.rss_samples_mb[:third])


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
            samples.append(procs.rss_mb(svc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = wrk.run(svc.url, script, concurrency, seconds)
    finally:
        stop.set()
        sampler.join()
    return SoakResult(seconds, concurrency, result.requests, result.errors, result.rps, result.p99_ms, samples)


# ------------------------------------------------------------------ report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--soak-seconds", type=float, default=180)
    parser.add_argument("--out", type=Path, default=procs.REPO / "docs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(__import__("tempfile").mkdtemp())
    results: dict[str, Any] = {}

    def log(msg: str) -> None:
        print(f"reliability: {msg}", file=sys.stderr, flush=True)

    log("overload: 1,000 requests/s offered (about 3x capacity) on 256 connections, 64-item queue")
    svc = Service.start({"BERTSERVE_MAX_QUEUE_ITEMS": "64"}, work / "overload.log")
    try:
        results["overload"] = asdict(overload(svc))
    finally:
        svc.stop()
    log("stall: a batch longer than a 0.5 s stall timeout")
    svc = Service.start({"BERTSERVE_STALL_TIMEOUT_S": "0.5"}, work / "stall.log")
    try:
        results["stall"] = asdict(stall(svc, 0.5))
    finally:
        svc.stop()
    log("slow clients and connection cap")
    env = {
        "BERTSERVE_HEADER_TIMEOUT_S": "1",
        "BERTSERVE_BODY_TIMEOUT_S": "1",
        "BERTSERVE_KEEP_ALIVE_TIMEOUT_S": "2",
        "BERTSERVE_MAX_CONNECTIONS": "8",
    }
    svc = Service.start(env, work / "slow.log")
    try:
        results["slow_clients"] = [asdict(r) for r in slow_clients(svc)] + [asdict(connection_cap(svc, 8))]
    finally:
        svc.stop()
    log(f"soak: {args.soak_seconds:.0f} s of steady load")
    svc = Service.start({}, work / "soak.log")
    try:
        s = soak(svc, args.soak_seconds, work=work)
        results["soak"] = {**asdict(s), "rss_growth_mb": s.rss_growth_mb}
    finally:
        svc.stop()
    (args.out / "reliability.json").write_text(json.dumps(results, indent=1))
    from loadtest.reliability_report import write

    write(results, args.out / "reliability.md")
    log(f"wrote {args.out / 'reliability.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
