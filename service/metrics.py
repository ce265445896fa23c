"""Prometheus metrics, one registry per app (so several apps can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


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
            "Time items wait in the queue",
            ["model"],
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
        self.queue_depth = Gauge("bertserve_queue_depth", "Items waiting in the queue", ["model"], registry=r)
        self.rejections = Counter(
            "bertserve_rejections", "Items refused or dropped, by reason", ["model", "reason"], registry=r
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
        self._depth = metrics.queue_depth.labels(model)
        self._wait = metrics.queue_wait.labels(model)
        self._inference = metrics.inference.labels(model)
        self._size = metrics.batch_size.labels(model)
        self._tokens = metrics.batch_tokens.labels(model)
        self._rejections = metrics.rejections
        self._failures = metrics.batch_failures.labels(model)
        self._model = model

    def queue_depth(self, items: int) -> None:
        self._depth.set(items)

    def rejected(self, reason: str, items: int) -> None:
        self._rejections.labels(self._model, reason).inc(items)

    def batch(self, items: int, padded_tokens: int, queue_waits: list[float], seconds: float) -> None:
        self._size.observe(items)
        self._tokens.observe(padded_tokens)
        self._inference.observe(seconds)
        for wait in queue_waits:
            self._wait.observe(wait)

    def failed(self, items: int) -> None:
        self._failures.inc()
