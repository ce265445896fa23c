"""Prometheus metrics, one registry per app (so several apps can live in one test process)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from service.priorities import INTERACTIVE, LEVELS, Priority

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class Histogram(Collector):
    """A Prometheus histogram for the event loop's own observations, exposed as the client
    library's would be (buckets, count, sum, created; the same names and labels).

    Why not the library's: every request observes six of them on the event loop (duration,
    tokenization, and the batch's size, tokens, inference and queue wait), and at low load it
    does so right after the model ran, when the CPU caches hold nothing of Python's
    (docs/design.md, "Measured figures"). There the library's (a lock per counter, a loop
    over the bounds) cost far more than these (a bisect and two additions; the figures:
    docs/operations.md, "Metrics and logs").
    Observed from the event loop's thread only, so no lock; a scrape reads a snapshot of the
    counts, as the library's histogram does.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name, self._documentation, self._labelnames = name, documentation, list(labelnames)
        self._bounds = sorted(float(b) for b in buckets)
        self._les = [*(floatToGoString(b) for b in self._bounds), "+Inf"]  # type: ignore[no-untyped-call]
        self._children: dict[tuple[str, ...], HistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> HistogramChild:
        key = tuple(str(v) for v in values)
        if len(key) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, got {key}")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HistogramChild(self._bounds)
        return child

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for key, child in list(self._children.items()):
            counts, total = list(child.counts), child.sum
            cumulative, buckets = 0, []
            for le, count in zip(self._les, counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            family.add_metric(list(key), buckets, total)
            # As the library's: unless PROMETHEUS_DISABLE_CREATED_SERIES (or its switch) is set.
            if getattr(prometheus_client.metrics, "_use_created", True):
                labels = dict(zip(self._labelnames, key, strict=True))
                family.add_sample(f"{self._name}_created", labels, child.created)
        yield family


class HistogramChild:
    __slots__ = ("_bounds", "counts", "created", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        # The first bound at or above the value: Prometheus buckets are "less than or equal".
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bertserve_requests", "Requests by route, model and status", ["route", "model", "status"], registry=r
        )
        self.request_duration = Histogram(
            "bertserve_request_duration_seconds", "Request duration", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "bertserve_queue_wait_seconds",
            "Time items wait in the queue, by the priority level they were queued at",
            ["model", "priority"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokenize = Histogram(
            "bertserve_tokenize_seconds",
            "Tokenization time per request",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "bertserve_inference_seconds", "Runtime time per batch", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "bertserve_batch_size", "Items per batch", ["model"], buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "bertserve_batch_tokens",
            "Padded tokens per batch (rows x longest)",
            ["model"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "bertserve_queue_depth", "Items waiting in the queue, by priority level", ["model", "priority"], registry=r
        )
        self.rejections = Counter(
            "bertserve_rejections",
            "Items refused or dropped, by reason and priority level",
            ["model", "reason", "priority"],
            registry=r,
        )
        self.batch_failures = Counter(
            "bertserve_batch_failures",
            "Runtime calls that raised (a failed batch, then each item retried alone)",
            ["model"],
            registry=r,
        )
        self.model_info = Gauge(
            "bertserve_model_info", "Loaded models", ["model", "task", "variant", "provider"], registry=r
        )
        self.cache_rows = Counter(
            "bertserve_cache_rows",
            "Rows looked up in the result cache: hit (answered from it), shared (waited for an identical "
            "row already queued), miss (queued)",
            ["model", "result"],
            registry=r,
        )
        self.cache_bytes = Gauge("bertserve_cache_bytes", "Bytes held by the result cache", registry=r)
        self.inflight = Gauge("bertserve_inflight_requests", "Requests being served", registry=r)
        self.ready = Gauge("bertserve_ready", "1 when ready to serve, 0 otherwise", registry=r)

    def observer(self, model: str) -> ModelObserver:
        return ModelObserver(self, model)

    def cache_observer(self, model: str) -> CacheObserver:
        return CacheObserver(self, model)


class CacheObserver:
    """The result cache's counters, bound to one model."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._hits = metrics.cache_rows.labels(model, "hit")
        self._shared = metrics.cache_rows.labels(model, "shared")
        self._misses = metrics.cache_rows.labels(model, "miss")
        self._bytes = metrics.cache_bytes

    def counted(self, hits: int, shared: int, misses: int) -> None:
        if hits:
            self._hits.inc(hits)
        if shared:
            self._shared.inc(shared)
        if misses:
            self._misses.inc(misses)

    def size(self, nbytes: int) -> None:
        self._bytes.set(nbytes)


class ModelObserver:
    """The batcher's view of the metrics, bound to one model."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._depth = {level: metrics.queue_depth.labels(model, level) for level in LEVELS}
        self._wait = {level: metrics.queue_wait.labels(model, level) for level in LEVELS}
        self._inference = metrics.inference.labels(model)
        self._size = metrics.batch_size.labels(model)
        self._tokens = metrics.batch_tokens.labels(model)
        self._rejections = metrics.rejections
        self._failures = metrics.batch_failures.labels(model)
        self._model = model

    def queue_depth(self, items: int, priority: Priority = INTERACTIVE) -> None:
        self._depth[priority].set(items)

    def rejected(self, reason: str, items: int, priority: Priority = INTERACTIVE) -> None:
        self._rejections.labels(self._model, reason, priority).inc(items)

    def batch(
        self, items: int, padded_tokens: int, queue_waits: list[float], seconds: float, levels: Sequence[Priority] = ()
    ) -> None:
        self._size.observe(items)
        self._tokens.observe(padded_tokens)
        self._inference.observe(seconds)
        if not levels:
            levels = [INTERACTIVE] * len(queue_waits)
        for wait, level in zip(queue_waits, levels, strict=True):
            self._wait[level].observe(wait)

    def failed(self, items: int) -> None:
        self._failures.inc()
