"""Pure ASGI middleware (no BaseHTTPMiddleware: it breaks disconnect detection and costs a
task per request): request id, body size limit, access log, request metrics, last-resort 500."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.responses import error_body
from service.api.state import AppState

log = logging.getLogger("bertserve.access")
errors_log = logging.getLogger("bertserve.errors")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContext:
    def __init__(self, app: ASGIApp, *, state: AppState) -> None:
        self.app = app
        self.state = state
        self.metrics = state.metrics
        self.max_body_bytes = state.settings.max_body_bytes
        self.body_timeout_s = state.settings.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 500, "started": False}
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        self.state.inflight += 1
        self.metrics.inflight.inc()
        try:
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    body = await self._read_body(receive, headers)
            except TimeoutError:
                await _send_error(send_with_id, 408, "request_timeout", "request body not received in time", "body")
                return
            if body is None:
                await _send_error(
                    send_with_id, 413, "request_too_large", f"request body over {self.max_body_bytes} bytes", "body"
                )
            else:
                await self.app(scope, _replay(body, receive), send_with_id)
        except Exception:
            errors_log.exception("unhandled error, request_id=%s", request_id)
            if not status["started"]:
                await _send_error(send_with_id, 500, "internal_error", f"internal error (request id {request_id})")
        finally:
            self.state.inflight -= 1
            self.metrics.inflight.dec()
            self._record(scope, int(status["code"]), time.perf_counter() - started, request_id)

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

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")
        model = scope["state"].get("model", "")
        self.metrics.requests.labels(path, model, str(status)).inc()
        self.metrics.request_duration.labels(path).observe(seconds)
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "route": path,
                "method": scope.get("method"),
                "model": model,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            },
        )


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


async def _send_error(send: Send, status: int, type_: str, message: str, param: str | None = None) -> None:
    """An error sent from here may leave the body unread (408, 413): the connection is then
    closed after it, since the rest of that body cannot be told apart from a next request."""
    payload: dict[str, Any] = error_body(type_, message, param)
    data = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if status in (408, 413):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
