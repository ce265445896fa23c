"""The error tree of the service and its single mapping to HTTP.

Every status the service answers with, other than 2xx, is a class here with its status, its
`type` (the envelope's machine-readable field) and a one-line description; `render` turns
any of them into the one envelope, `{"error": {"type", "message", "param"}}`, whether the
route, the middleware or the protocol layer raised it. The README's error table and the
OpenAPI error responses are generated from (or tested against) `TABLE`.

Domain code raises these; foreign exceptions (onnxruntime's, pydantic's, starlette's) are
mapped to them in one place each: `runtime/session.py`, `api/errors.py`.
"""

from __future__ import annotations

from typing import Any

import orjson


class ServiceError(Exception):
    """Anything else: 500 with a generic message and the request id; details go to the log."""

    status = 500
    type = "internal_error"
    description = "anything else: a generic message with the request id; details go to the log only"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ServiceError):
    """A refused CORS preflight: the only 400, since every body problem is a 422."""

    status = 400
    type = "bad_request"
    description = "a CORS preflight from an origin, method or header that is not allowed"


class Unauthorized(ServiceError):
    status = 401
    type = "unauthorized"
    description = "missing or bad API key, when keys are configured (also guards /models)"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="bertserve"'}


class NotFound(ServiceError):
    status = 404
    type = "not_found"
    description = "no such route"


class ModelNotFound(ServiceError):
    status = 404
    type = "model_not_found"
    description = "unknown model name, or a model that does not serve this task"


class MethodNotAllowed(ServiceError):
    status = 405
    type = "method_not_allowed"
    description = "the route exists, not with this method"


class RequestTimeout(ServiceError):
    status = 408
    type = "request_timeout"
    description = "the client was too slow sending the request's headers or body"

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}  # the rest of the request cannot be told from a next one


class BodyTooLarge(ServiceError):
    status = 413
    type = "request_too_large"
    description = "body over BERTSERVE_MAX_BODY_BYTES (read no further than the limit)"

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class InvalidInput(ServiceError):
    status = 422
    type = "invalid_request"
    description = (
        "malformed JSON, wrong types, empty input, too many inputs, input too long with truncate=false, unknown option"
    )


class ModelRejected(ServiceError):
    """A reload found a model directory that does not load, verify or warm up: nothing of
    that reload is applied, and every model keeps serving as before."""

    status = 422
    type = "model_rejected"
    description = "POST /admin/reload: a model directory does not load or verify; the models served are unchanged"


class Overloaded(ServiceError):
    """The queue is full: refused at once, never queued."""

    status = 429
    type = "overloaded"
    description = "the model's queue is full: refused at once, with Retry-After"
    retry_after_s = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class ClientClosed(ServiceError):
    """The client went away before the answer: nobody reads it, it is only logged and counted
    (nginx's 499), and the request's queued items are dropped."""

    status = 499
    type = "client_closed"
    description = "logged only: the client closed the connection before the answer"


class InferenceFailed(ServiceError):
    """The runtime raised on this item; the message sent to the client stays generic."""

    status = 500
    type = "internal_error"
    description = "the runtime failed on this input (other inputs of its batch are retried alone)"


class Unavailable(ServiceError):
    status = 503
    type = "unavailable"
    description = "not ready yet (loading), draining, runtime stalled, or too many open connections"


class DeadlineExceeded(ServiceError):
    status = 504
    type = "timeout"
    description = "the request's deadline passed before it was answered"


# Every class a response can come from, in status order: the README table and OpenAPI's
# error responses are built from (or checked against) this list.
TABLE: tuple[type[ServiceError], ...] = (
    BadRequest,
    Unauthorized,
    NotFound,
    ModelNotFound,
    MethodNotAllowed,
    RequestTimeout,
    BodyTooLarge,
    InvalidInput,
    ModelRejected,
    Overloaded,
    ClientClosed,
    ServiceError,
    InferenceFailed,
    Unavailable,
    DeadlineExceeded,
)

_BY_STATUS = {cls.status: cls for cls in reversed(TABLE)}


def for_status(status: int, message: str) -> ServiceError:
    """The error for a status raised by the framework (404, 405...), in the same tree."""
    cls = _BY_STATUS.get(status, ServiceError)
    return cls(message)


def envelope(type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, "param": param}}


def render(error: ServiceError, request_id: str) -> tuple[int, dict[str, str], bytes]:
    """The one rendering of an error: status, headers, body. A 500 says nothing of its cause
    (the log has it), only the request id to find it by."""
    message = error.message
    if error.status == 500:
        message = f"{message} (request id {request_id})"
    body = orjson.dumps(envelope(error.type, message, error.param))
    headers = {"Content-Type": "application/json", "X-Request-ID": request_id, **error.headers()}
    return error.status, headers, body


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
    rows += [f"| {cls.status} | `{cls.type}` | {cls.description} |" for cls in TABLE]
    return "\n".join(rows)
