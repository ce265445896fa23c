"""OpenTelemetry traces, configured by the standard OTEL_* variables alone.

Off unless they name somewhere to send spans: OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER set to anything but `none`;
OTEL_SDK_DISABLED=true turns it off whatever else is set. Off costs nothing: this module
then imports nothing of OpenTelemetry's SDK or exporters, FastAPI's own instrumentation is
switched off, and the middleware skips its one hook on a None check. (FastAPI itself imports
the OpenTelemetry API package, on or off: that is its cost, not ours.)

On, FastAPI's native instrumentation makes each request's server span, on our tracer
provider rather than a global one. It continues an incoming W3C `traceparent` (through the
propagators of OTEL_PROPAGATORS, tracecontext and baggage by default). Its metrics, logs and
per-dependency spans stay off: Prometheus and the JSON access log already cover the first
two, and a span for every dependency of every request says nothing about where the time went.
Spans leave in batches (BatchSpanProcessor, OTEL_BSP_*) over OTLP/HTTP protobuf, and are
flushed when the app shuts down.

Once a request is answered, `Tracing.annotate` draws its children from the timings the
serving layer keeps anyway (`service.tasks.common.Timing`): `tokenize`, `queue` (from
when its items were queued until the last of them started running; `x-queue-time` is the
same wait) and one `inference` span per batch its items rode in, with that batch's size.
The spans are made after the fact with explicit start and end times, so the batch loop
and the runtime thread never carry a trace context.

We use FastAPI's native instrumentation rather than opentelemetry-instrumentation-fastapi:
the FastAPI release we run has it built in and turns it off when the contrib middleware is
present, so the contrib package would replace it with an extra ASGI layer, "http send" and
"http receive" spans for every message, and more packages to pin.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from service import __version__

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from service.request_context import RequestContext
    from service.tasks.common import Timing

log = logging.getLogger("bertserve")

OTLP_PROTOCOL = "http/protobuf"
SERVICE_NAME = "bertserve"
DEFAULT_EXCLUDED = ["^/health/", "^/metrics$"]


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces (decided without importing OpenTelemetry)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    named = _exporter_names(environ)
    if named:
        return any(name != "none" for name in named)
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def from_environment() -> Tracing | None:
    """The tracer provider the environment asks for, or None (tracing off). A setting that
    cannot be honoured (another exporter or protocol) is logged and skipped: telemetry never
    keeps the service from starting."""
    if not wanted(os.environ):
        return None
    exporters = _exporters(os.environ)
    if not exporters:
        log.warning("tracing off: no usable exporter in OTEL_TRACES_EXPORTER (otlp or console)")
        return None
    return Tracing(exporters)


def fastapi_telemetry(tracing: Tracing | None) -> TelemetryConfig:
    """FastAPI's `telemetry=` argument: its server spans on our provider, nothing else of it.
    Never auto-configured (FASTAPI_OTEL_AUTO_CONFIGURE would add a second exporter)."""
    if tracing is None:
        return {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}
    return {
        "tracer_provider": tracing.provider,
        "tracing": True,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
        "exclude": excluded(os.environ),
    }


def excluded(environ: Mapping[str, str]) -> Callable[[MutableMapping[str, Any]], bool]:
    """Which requests get no span: those whose path matches one of the comma-separated
    regular expressions of OTEL_PYTHON_FASTAPI_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS),
    as OpenTelemetry's own FastAPI instrumentation reads them. Unset: the health probes and
    the metrics scrape, which come every few seconds and say nothing about serving."""
    given = environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", environ.get("OTEL_PYTHON_EXCLUDED_URLS"))
    patterns = DEFAULT_EXCLUDED if given is None else [p.strip() for p in given.split(",") if p.strip()]
    if not patterns:
        return lambda scope: False
    try:
        search = re.compile("|".join(f"(?:{p})" for p in patterns)).search
    except re.error as exc:
        log.warning("tracing: OTEL_PYTHON_FASTAPI_EXCLUDED_URLS is not a list of regular expressions (%s)", exc)
        search = re.compile("|".join(DEFAULT_EXCLUDED)).search
    return lambda scope: search(scope.get("path", "")) is not None


class Tracing:
    """The SDK's tracer provider, batching to the configured exporters, and the request
    span's children."""

    def __init__(self, exporters: list[SpanExporter]) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Sampler (OTEL_TRACES_SAMPLER, _ARG) and span limits come from the environment.
        self.provider: TracerProvider = TracerProvider(resource=_resource())
        for exporter in exporters:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer("bertserve", __version__)
        self._current_span = trace.get_current_span
        self._in_context = trace.set_span_in_context

    def routed(self, method: str, path: str) -> None:
        """Name the server span after a route the framework did not route itself (the direct
        path), as the framework names the spans of the routes it routes."""
        span = self._current_span()
        if span.is_recording():
            span.set_attribute("http.route", path)
            span.update_name(f"{method} {path}")

    def annotate(self, request: RequestContext) -> None:
        """Called as the response starts, with the request's context: adds the request id,
        model and batch sizes to the current (server) span, and its children."""
        span = self._current_span()
        if not span.is_recording():  # no span, or sampled out: nothing to pay for
            return
        span.set_attribute("bertserve.request_id", request.request_id)
        if request.model:
            span.set_attribute("bertserve.model", request.model)
        if request.call is not None:
            self._children(span, request.call.timing)

    def _children(self, span: Span, timing: Timing) -> None:
        ticket = timing.ticket
        runs = ticket.runs
        if runs:
            span.set_attribute("bertserve.batch_sizes", [run.items for run in runs])
        parent = self._in_context(span)
        # The timings are perf_counter seconds; spans take wall-clock nanoseconds.
        offset = time.time_ns() - time.perf_counter_ns()

        def child(name: str, start: float, end: float, attributes: dict[str, Any] | None = None) -> None:
            started = int(start * 1e9) + offset
            made = self._tracer.start_span(name, context=parent, start_time=started, attributes=attributes)
            made.end(end_time=max(started, int(end * 1e9) + offset))

        if timing.tokenize_started is not None:
            child("tokenize", timing.tokenize_started, timing.tokenize_started + timing.tokenize_s)
        if ticket.queued_at is not None:
            # Until the last batch started; none ran: until now (it expired, or its batch failed).
            ended = max(run.started for run in runs) if runs else time.perf_counter()
            child("queue", ticket.queued_at, ended)
        for run in runs:
            child("inference", run.started, run.started + run.seconds, {"bertserve.batch_size": run.items})

    def shutdown(self) -> None:
        """Export what is still buffered, then stop the export threads."""
        self.provider.shutdown()


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    return [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in _exporter_names(environ) or ["otlp"]:
        if name == "otlp":
            protocol = (
                environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or OTLP_PROTOCOL
            )
            if protocol.strip().lower() != OTLP_PROTOCOL:
                log.warning(
                    "tracing: OTLP protocol %r is not supported, only %s; otlp skipped", protocol, OTLP_PROTOCOL
                )
                continue
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())  # endpoint, headers, timeout... from OTEL_EXPORTER_OTLP_*
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            log.warning("tracing: OTEL_TRACES_EXPORTER %r is not supported (otlp, console, none); skipped", name)
    return exporters


def _resource() -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, with `bertserve` as the service's name
    when they give none, and this release as its version."""
    from opentelemetry.sdk.resources import Resource

    resource = Resource({"service.version": __version__}).merge(Resource.create())
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    return resource
