"""Traces over real HTTP: `bertserve serve` exporting OTLP/HTTP to a receiver in the test,
which decodes each protobuf payload; and with tracing off, nothing of the SDK loaded in the
serving process and nothing sent.

Each server runs under a small wrapper that writes the process's `sys.modules` to a file
at exit, so the test sees what a served app (lifespan, a real request, drain) imported.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.procs import free_port, launch, serve_cmd, stop, wait_ready
from tests.sync import until

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
# Modules that only tracing brings in: none of them may be loaded while it is off. (Not
# google.protobuf: `onnx` uses it to parse a graph whose weights its sessions share.)
TRACING_ONLY = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto")

DUMP_MODULES_AT_EXIT = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from service.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Received:
    resource: dict[str, Any]
    span: Span


class Receiver:
    """An OTLP/HTTP traces endpoint on 127.0.0.1: POST /v1/traces, protobuf (gzip or not)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.posts = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    receiver.posts += 1
                    for resource_spans in request.resource_spans:
                        resource = attributes(resource_spans.resource.attributes)
                        for scope_spans in resource_spans.scope_spans:
                            receiver.received += [Received(resource, span) for span in scope_spans.spans]
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trace(self, trace_id: str) -> list[Received]:
        return [r for r in list(self.received) if r.span.trace_id == bytes.fromhex(trace_id)]

    def wait_for(self, done: Callable[[], bool], timeout: float = 15) -> None:
        until(done, timeout=timeout, interval=0.05, what="spans to arrive at the receiver")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def no_otel_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers inherit this environment: only what a test sets may configure tracing."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "FASTAPI_OTEL")):
            monkeypatch.delenv(name)


class Served:
    """`bertserve serve` on the tiny models under the module-dumping wrapper."""

    def __init__(self, models: Path, env: dict[str, str], work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.modules_file = work / f"modules-{self.port}.json"
        cmd = [sys.executable, "-c", DUMP_MODULES_AT_EXIT, str(self.modules_file), *serve_cmd(self.port, models)[3:]]
        env = {"BERTSERVE_LOG_LEVEL": "warning", **env}
        self.proc = launch(cmd, env, work / f"server-{self.port}.log")
        wait_ready(self.proc, f"{self.url}/health/ready", 120)

    def classify(self, texts: list[str], traceparent: str | None = TRACEPARENT) -> httpx.Response:
        headers = {"traceparent": traceparent} if traceparent else {}
        r = httpx.post(f"{self.url}/classify", json={"inputs": texts}, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        return r

    def stop(self) -> set[str]:
        """SIGTERM (drain, then the lifespan's shutdown), exit 0; the modules it had loaded."""
        assert stop(self.proc, 60) == 0
        return set(json.loads(self.modules_file.read_text()))


def _by_name(spans: list[Received]) -> dict[str, list[Span]]:
    out: dict[str, list[Span]] = {}
    for r in spans:
        out.setdefault(r.span.name, []).append(r.span)
    return out


def test_request_span_continues_the_callers_trace(tiny_repo: Path, receiver: Receiver, tmp_path: Path) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "bertserve-test",
        "BERTSERVE_MAX_BATCH_SIZE": "2",  # three texts ride in two batches
    }
    server = Served(tiny_repo, env, tmp_path)
    try:
        # Three texts of one token length each: the fill floor keeps them batchable together.
        r = server.classify(["good film", "bad film", "fine film"])
        receiver.wait_for(lambda: len(receiver.trace(TRACE_ID)) >= 5)
    finally:
        modules = server.stop()
    spans = receiver.trace(TRACE_ID)
    names = _by_name(spans)
    assert sorted(names) == ["POST /classify", "inference", "queue", "tokenize"], sorted(names)
    (request,) = names["POST /classify"]
    assert request.kind == Span.SPAN_KIND_SERVER
    assert request.parent_span_id == bytes.fromhex(PARENT_ID)  # the caller's span
    attrs = attributes(request.attributes)
    assert attrs["http.route"] == "/classify" and attrs["http.response.status_code"] == 200
    assert attrs["bertserve.model"] == "tiny-clf"
    assert attrs["bertserve.request_id"] == r.headers["x-request-id"]
    assert sorted(attrs["bertserve.batch_sizes"]) == [1, 2]
    children = [s for name in ("tokenize", "queue", "inference") for s in names[name]]
    assert len(names["tokenize"]) == len(names["queue"]) == 1 and len(names["inference"]) == 2
    slack = 1_000_000  # 1 ms: the children's times are converted from the monotonic clock
    for child in children:
        assert child.parent_span_id == request.span_id
        assert request.start_time_unix_nano - slack <= child.start_time_unix_nano
        assert child.start_time_unix_nano <= child.end_time_unix_nano <= request.end_time_unix_nano + slack
    sizes = sorted(attributes(s.attributes)["bertserve.batch_size"] for s in names["inference"])
    assert sizes == [1, 2]
    (tokenize,), (queue,) = names["tokenize"], names["queue"]
    assert tokenize.end_time_unix_nano <= queue.start_time_unix_nano + slack  # tokenized, then queued
    last_batch = max(s.start_time_unix_nano for s in names["inference"])
    assert abs(queue.end_time_unix_nano - last_batch) <= slack  # queued until the last batch started
    assert {r.resource["service.name"] for r in spans} == {"bertserve-test"}
    assert "opentelemetry.sdk.trace" in modules  # the off test's check can see an import


def test_request_without_traceparent_starts_a_trace(tiny_repo: Path, receiver: Receiver, tmp_path: Path) -> None:
    """And the spans still buffered when the service stops are flushed on the way out: the
    schedule delay (10 minutes) never comes."""
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.endpoint}/v1/traces", "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    server = Served(tiny_repo, env, tmp_path)
    try:
        server.classify(["good film"], traceparent=None)
        # The request's tokenize, queue and inference spans end before its response starts
        # (Tracing.annotate): a processor that sent spans as they end would have had them
        # answered by the receiver before this response came back.
        assert receiver.posts == 0
    finally:
        server.stop()
    names = _by_name(receiver.received)
    (request,) = names["POST /classify"]
    assert request.parent_span_id == b"" and len(request.trace_id) == 16
    # One trace only: the readiness polls before the request made no span.
    assert all(s.trace_id == request.trace_id for spans in names.values() for s in spans)
    assert [attributes(s.attributes)["bertserve.batch_size"] for s in names["inference"]] == [1]
    assert {r.resource["service.name"] for r in receiver.received} == {"bertserve"}


def _fastapi_alone() -> set[str]:
    """The OpenTelemetry modules FastAPI imports for itself (its API package), tracing or not."""
    code = "import json, sys, fastapi, fastapi.telemetry._runtime; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m for m in json.loads(done.stdout) if m.startswith("opentelemetry")}


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "RECEIVER"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "RECEIVER"},
    ],
    ids=["unset", "sdk-disabled", "exporter-none"],
)
def test_tracing_off_imports_and_sends_nothing(
    tiny_repo: Path, receiver: Receiver, tmp_path: Path, env: dict[str, str]
) -> None:
    env = {k: receiver.endpoint if v == "RECEIVER" else v for k, v in env.items()}
    server = Served(tiny_repo, {**env, "OTEL_BSP_SCHEDULE_DELAY": "50"}, tmp_path)
    try:
        r = server.classify(["good film", "bad film"])
        assert "x-inference-time" in r.headers  # the timings are kept: only their spans are not made
    finally:
        modules = server.stop()
    assert receiver.posts == 0
    loaded = sorted(m for m in modules if m.startswith(TRACING_ONLY))
    assert loaded == [], loaded
    assert "service.tracing" in modules
    assert {m for m in modules if m.startswith("opentelemetry")} <= _fastapi_alone()
