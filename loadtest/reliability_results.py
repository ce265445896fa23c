"""What each reliability scenario measured, and what would make it fail: shared by the
scenarios (`reliability.py`) and the report (`reliability_report.py`), which need not know
each other."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

OVERLOAD_RSS_GROWTH_MB = 150


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
    # 429s of requests sent in the first `onset_s`, while the connections open and the first
    # burst meets an empty queue, reported apart (as in the storm) and not bounded.
    onset_s: float = 0.0
    onset_rejected: int = 0
    onset_rejected_p99_ms: float = 0.0
    # What the service promises: an accepted request is answered within its deadline counted
    # from when the service read it (its x-total-time). The caller's wall clock (ok_p99_ms,
    # ok_max_ms) also counts the time a request sent on a connection held after a 429
    # waited unread in the socket (service/backpressure.py), which no deadline covers: its
    # X-Request-Timeout is not known until it is read.
    deadline_s: float = 5.0
    ok_served_max_ms: float = 0.0

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
        if self.ok_served_max_ms > self.deadline_s * 1000:
            out.append(
                f"an accepted request was answered {self.ok_served_max_ms:.0f} ms after it was read, "
                f"past its {self.deadline_s:g} s deadline"
            )
        # The first burst of 256 connections takes the allocator to its high-water mark (80, 89
        # and 101 MB in three runs of the default models); a leak is the soak's to find, over
        # minutes (SoakResult). This bound catches a burst that holds on to far more.
        if self.rss_after_mb - self.rss_before_mb > OVERLOAD_RSS_GROWTH_MB:
            out.append(f"resident memory grew {self.rss_after_mb - self.rss_before_mb:.0f} MB")
        if self.idle_p50_after_ms > 2 * self.idle_p50_before_ms + 5:
            out.append(f"no recovery: idle p50 {self.idle_p50_before_ms:.1f} -> {self.idle_p50_after_ms:.1f} ms")
        return out


@dataclass
class StallResult:
    stall_timeout_s: float
    seconds_to_unready: float | None
    unready_message: str
    batch_status: int
    seconds_to_ready_after_batch: float | None
    items: int = 0  # reviews of 256 tokens in the one batch
    batch_seconds: float = 0.0  # its runtime (X-Inference-Time)
    factor: float = 3.0  # how many stall timeouts it had to last

    def problems(self) -> list[str]:
        out = []
        if self.batch_seconds < self.factor * self.stall_timeout_s:
            out.append(
                f"the largest batch ({self.items} items) ran {self.batch_seconds:.2f} s, "
                f"under {self.factor:g} x the {self.stall_timeout_s} s stall timeout: no stall to see"
            )
        if self.seconds_to_unready is None or "stalled" not in self.unready_message:
            out.append("readiness never reported the stall")
        if self.batch_status != 200:
            out.append(f"the long batch ended {self.batch_status}")
        if self.seconds_to_ready_after_batch is None or self.seconds_to_ready_after_batch > 2:
            out.append("readiness did not come back within 2 s of the batch returning")
        return out


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


@dataclass
class StormResult:
    """Closed-loop clients that resend at once whatever the answer (no back-off) against a
    small queue, next to a reference at moderate concurrency on the same server, same run.
    The 429 latency bound applies after the onset, when every client's first request lands
    at once: 1,500 requests in one burst cannot all be answered within 50 ms on 2 cores
    (the onset's figures are reported apart)."""

    clients: int
    seconds: float
    queue_items: int
    reference_clients: int
    reference_rps: float  # 200s per second at `reference_clients`
    reference_p99_ms: float
    statuses: dict[str, int]
    ok_rps: float  # goodput: 200s per second in the storm
    ok_p50_ms: float
    ok_p99_ms: float
    rejected_p50_ms: float  # 429s after the onset (requests sent after the first `onset_s`)
    rejected_p99_ms: float
    rejected_max_ms: float
    onset_s: float
    onset_rejected: int  # 429s to requests sent in the first `onset_s`: every client's first at once
    onset_rejected_p99_ms: float
    socket_errors: int
    server_cpu: float  # cores, during the storm
    wrk_cpu: float
    reference_server_cpu: float
    mean_batch: float  # items per batch during the storm
    idle_p50_after_ms: float

    @property
    def goodput(self) -> float:
        """The storm's successful requests per second, as a share of the reference's."""
        return self.ok_rps / self.reference_rps if self.reference_rps else 0.0

    def problems(self, min_goodput: float = 0.7, max_rejected_p99_ms: float = 50) -> list[str]:
        out = []
        if set(self.statuses) - {"200", "429"}:
            out.append(f"statuses other than 200/429: {self.statuses}")
        if self.goodput < min_goodput:
            out.append(f"goodput {self.goodput:.2f} of the c={self.reference_clients} throughput (< {min_goodput})")
        if self.rejected_p99_ms > max_rejected_p99_ms:
            out.append(f"429 p99 {self.rejected_p99_ms:.0f} ms (> {max_rejected_p99_ms:.0f} ms)")
        if self.socket_errors:
            out.append(f"{self.socket_errors} socket errors")
        return out
