"""The one table from an error's kind to HTTP, and the one renderer of the error envelope,
`{"error": {"type", "message", "param"}}`, whether the route, the middleware or the protocol
layer answers. The README's error table and the OpenAPI error responses are generated from
(or tested against) `TABLE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from service.errors import BY_KIND, ErrorKind, ServiceError

RETRY_AFTER_S = 1  # what a 429 asks the client to wait


@dataclass(frozen=True)
class Wire:
    """`type`: the envelope's machine-readable field; `description`: for the docs."""

    status: int
    type: str
    description: str
    headers: dict[str, str] = field(default_factory=dict)


# In status order: the README's table lists them so.
TABLE: dict[ErrorKind, Wire] = {
    "bad_request": Wire(400, "bad_request", "a CORS preflight from an origin, method or header that is not allowed"),
    "unauthorized": Wire(
        401,
        "unauthorized",
        "missing or bad API key, when keys are configured (also guards /models and /v1/models)",
        {"WWW-Authenticate": 'Bearer realm="bertserve"'},
    ),
    "not_found": Wire(404, "not_found", "no such route"),
    "model_not_found": Wire(404, "model_not_found", "unknown model name, or a model that does not serve this task"),
    "method_not_allowed": Wire(405, "method_not_allowed", "the route exists, not with this method"),
    # The rest of a request cut short cannot be told from a next one: the connection closes.
    "request_timeout": Wire(
        408,
        "request_timeout",
        "the client was too slow sending the request's headers or body",
        {"Connection": "close"},
    ),
    "body_too_large": Wire(
        413,
        "request_too_large",
        "body over BERTSERVE_MAX_BODY_BYTES (read no further than the limit)",
        {"Connection": "close"},
    ),
    "invalid_input": Wire(
        422,
        "invalid_request",
        "malformed JSON, wrong types, empty input, too many inputs, input too long with truncate=false, unknown option",
    ),
    "model_rejected": Wire(
        422,
        "model_rejected",
        "POST /admin/reload: a model directory does not load or verify; the models served are unchanged",
    ),
    "overloaded": Wire(
        429,
        "overloaded",
        "the model's queue is full: refused at once, with Retry-After",
        {"Retry-After": str(RETRY_AFTER_S)},
    ),
    # nginx's 499: never sent, the client is gone; logged and counted.
    "client_closed": Wire(499, "client_closed", "logged only: the client closed the connection before the answer"),
    "internal": Wire(
        500,
        "internal_error",
        "anything else: a generic message with the request id; details go to the log only",
    ),
    "inference_failed": Wire(
        500,
        "internal_error",
        "the runtime failed on this input (other inputs of its batch are retried alone)",
    ),
    "unavailable": Wire(
        503, "unavailable", "not ready yet (loading), draining, runtime stalled, or too many open connections"
    ),
    "deadline_exceeded": Wire(504, "timeout", "the request's deadline passed before it was answered"),
}

INTERNAL = TABLE["internal"].status
_BY_STATUS = {wire.status: BY_KIND[kind] for kind, wire in reversed(TABLE.items())}


def status_of(error: ServiceError) -> int:
    return TABLE[error.kind].status


def for_status(status: int, message: str) -> ServiceError:
    """The error for a status raised by the framework (404, 405...), in the same tree."""
    return _BY_STATUS.get(status, ServiceError)(message)


def envelope(type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, "param": param}}


def render(error: ServiceError, request_id: str) -> tuple[int, dict[str, str], bytes]:
    """The one rendering of an error: status, headers, body. A 500 says nothing of its cause
    (the log has it), only the request id to find it by."""
    wire = TABLE[error.kind]
    message = error.message
    if wire.status == INTERNAL:
        message = f"{message} (request id {request_id})"
    body = orjson.dumps(envelope(wire.type, message, error.param))
    headers = {"Content-Type": "application/json", "X-Request-ID": request_id, **wire.headers}
    return wire.status, headers, body


def raw_http(error: ServiceError, request_id: str) -> bytes:
    """A whole HTTP/1.1 response, for the protocol layer, which answers before any request
    reaches the app (header timeout, connection cap) and then closes the connection."""
    status, headers, body = render(error, request_id)
    headers.update({"Content-Length": str(len(body)), "Connection": "close"})
    reason = {408: "Request Timeout", 503: "Service Unavailable"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k.lower()}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode("latin-1") + body


def markdown_table() -> str:
    """The README's error table, from `TABLE` (a test keeps the README equal to it)."""
    rows = ["| status | type | when |", "|---|---|---|"]
    rows += [f"| {wire.status} | `{wire.type}` | {wire.description} |" for wire in TABLE.values()]
    return "\n".join(rows)
