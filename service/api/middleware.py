"""Pure ASGI middleware (no BaseHTTPMiddleware: it breaks disconnect detection and costs a
task per request): request id, body size and time limits, access log, request metrics,
last-resort 500. It is the outermost layer, so every answer carries X-Request-ID."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import direct
from service.api.overload import fast_path
from service.errors import BadRequest, BodyTooLarge, RequestTimeout, ServiceError
from service.http_errors import INTERNAL, TABLE, render
from service.request_context import RequestContext, context_of
from service.request_ids import request_id_from
from service.state import AppState
from service.tasks.common import Timing
from service.tracing import Tracing

log = logging.getLogger("bertserve.access")
errors_log = logging.getLogger("bertserve.errors")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, state: AppState, tracing: Tracing | None = None) -> None:
        self.app = app
        self.state = state
        self.tracing = tracing  # None: tracing off, and this is all it costs
        self.metrics = state.metrics
        self.max_body_bytes = state.settings.body_limit
        self.body_timeout_s = state.settings.body_timeout_s
        # Each request's labelled series, looked up once: `labels()` validates, locks and
        # builds its key on every call. As many as Prometheus keeps (routes x models x statuses).
        self._counted: dict[tuple[str, str, int], Callable[[], None]] = {}
        self._timed: dict[str, Callable[[float], None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = request_id_from(given)
        context = context_of(scope)
        context.request_id, context.entered_at = request_id, time.monotonic()
        started = time.perf_counter()
        status = {"code": INTERNAL, "started": False}
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                headers = list(message.get("headers", []))
                if not any(k == b"x-request-id" for k, _ in headers):
                    headers.append(id_header)
                call = context.call
                headers += timing_headers(call.timing if call else None, time.perf_counter() - started)
                message["headers"] = headers
                if self.tracing is not None:
                    self.tracing.annotate(context)
            await send(message)

        self.state.inflight += 1
        self.metrics.inflight.inc()
        try:
            # A connection held after a 429 and resumed in its turn skips the fast 429; the room
            # promised to it (or reserved below) is released once the request is queued, or
            # answered without.
            release = context.resumed
            decision = None if release else fast_path(self.state, scope["method"], scope["path"], headers)
            if decision is not None and decision.refused is not None:
                context.route_path, context.hold_for = scope["path"], decision.task  # the protocol holds it
                await send_error(send_with_id, decision.refused, request_id)
                return
            release = release or (decision.release if decision else None)
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    body = await self._read_body(receive, headers)
            except TimeoutError:
                late = RequestTimeout("request body not received in time (BERTSERVE_BODY_TIMEOUT_S)", "body")
                await send_error(send_with_id, late, request_id)
                return
            if body is None:
                limit = f"{self.max_body_bytes} bytes (BERTSERVE_MAX_BODY_BYTES)"
                error = BodyTooLarge(f"request body over {limit}", "body")
                await send_error(send_with_id, error, request_id)
            else:
                context.release_room = release  # ended once queued (deps.new_call)
                found = direct.parse(self.state, scope, headers, body)
                if found is not None:
                    if self.tracing is not None:
                        self.tracing.routed(scope["method"], scope["path"])
                    await direct.dispatch(self.state, *found, scope, receive, send_with_id, headers)
                else:
                    await self.app(scope, _replay(body, receive), send_with_id)
        except Exception:
            errors_log.exception("unhandled error, request_id=%s", request_id)
            if not status["started"]:
                await send_error(send_with_id, ServiceError("internal error"), request_id)
        finally:
            if release:
                release()
            # Taken out of the context, not just released: the Call's closures refer to the
            # request, whose scope refers to the Call, a cycle that only the garbage collector
            # would free (with the framework's objects hanging off the scope, and collector
            # pauses on the event loop under a retry storm).
            call, context.call = context.call, None
            if call is not None:
                call.release()
            self.state.inflight -= 1
            self.metrics.inflight.dec()
            priority = call.priority if call is not None else ""
            self._record(scope, context, int(status["code"]), time.perf_counter() - started, priority)

    async def _read_body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes | None:
        """Read the body up to the limit, never past it: None means too large."""
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _record(self, scope: Scope, context: RequestContext, status: int, seconds: float, priority: str) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or context.route_path or "unmatched"
        model = context.model
        key = (path, model, status)
        count = self._counted.get(key)
        if count is None:
            count = self._counted[key] = self.metrics.requests.labels(path, model, str(status)).inc
        count()
        observe = self._timed.get(path)
        if observe is None:
            observe = self._timed[path] = self.metrics.request_duration.labels(path).observe
        observe(seconds)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "request_id": context.request_id,
                    "route": path,
                    "method": scope.get("method"),
                    "model": model,
                    "priority": priority,  # the level it was served at; empty off the model routes
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )


def timing_headers(timing: Timing | None, total_s: float) -> list[tuple[bytes, bytes]]:
    """Where the time went, in milliseconds, as text-embeddings-inference reports it."""
    out = [(b"x-total-time", _ms(total_s))]
    if timing is not None:
        out += [
            (b"x-tokenization-time", _ms(timing.tokenize_s)),
            (b"x-queue-time", _ms(timing.ticket.queue_s)),
            (b"x-inference-time", _ms(timing.ticket.inference_s)),
        ]
    return out


def _ms(seconds: float) -> bytes:
    return f"{seconds * 1000:.3f}".encode()


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the buffered body to the app once, then pass the real channel through (so the
    app still hears about a client disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def send_error(send: Send, error: ServiceError, request_id: str) -> None:
    status, headers, body = render(error, request_id)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class EnvelopedCORS(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the error envelope rather than
    as text/plain (the CORS headers it computed are kept)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != TABLE[BadRequest.kind].status:  # Starlette's refusal
            return response
        reason = bytes(response.body).decode("utf-8", "replace")
        status, headers, body = render(BadRequest(reason), "")
        kept: dict[str, Any] = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")
        }
        kept.update({k: v for k, v in headers.items() if k != "X-Request-ID"})
        return Response(body, status_code=status, headers=kept)
