"""The service's errors, one class per kind of failure.

Domain code (the batcher, the engine, the tasks) raises these and knows nothing of HTTP: an
error carries its `kind`, a message for the client and the parameter it is about. What a
kind is on the wire (its status, the envelope's `type`, its headers) is decided in one table,
`service/http_errors.py`, as text-embeddings-inference maps its error types to status codes.
Foreign exceptions (onnxruntime's, pydantic's, starlette's) are mapped to these in one place
each: `runtime/session.py`, `api/errors.py`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

ErrorKind = Literal[
    "bad_request",
    "unauthorized",
    "not_found",
    "model_not_found",
    "method_not_allowed",
    "request_timeout",
    "body_too_large",
    "invalid_input",
    "model_rejected",
    "overloaded",
    "client_closed",
    "internal",
    "inference_failed",
    "unavailable",
    "deadline_exceeded",
]


class ServiceError(Exception):
    """Anything else: the client hears only that it failed and where the log has it."""

    kind: ClassVar[ErrorKind] = "internal"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadRequest(ServiceError):
    """A refused CORS preflight: every body problem is an InvalidInput."""

    kind = "bad_request"


class Unauthorized(ServiceError):
    kind = "unauthorized"


class NotFound(ServiceError):
    kind = "not_found"


class ModelNotFound(ServiceError):
    kind = "model_not_found"


class MethodNotAllowed(ServiceError):
    kind = "method_not_allowed"


class RequestTimeout(ServiceError):
    """The client was too slow sending its request's headers or body."""

    kind = "request_timeout"


class BodyTooLarge(ServiceError):
    kind = "body_too_large"


class InvalidInput(ServiceError):
    kind = "invalid_input"


class ModelRejected(ServiceError):
    """A reload found a model directory that does not load, verify or warm up: nothing of
    that reload is applied, and every model keeps serving as before."""

    kind = "model_rejected"


class Overloaded(ServiceError):
    """The queue is full: refused at once, never queued."""

    kind = "overloaded"


class ClientClosed(ServiceError):
    """The client went away before the answer: nobody reads it, it is only logged and counted,
    and the request's queued items are dropped."""

    kind = "client_closed"


class InferenceFailed(ServiceError):
    """The runtime raised on this item; the message sent to the client stays generic."""

    kind = "inference_failed"


class Unavailable(ServiceError):
    kind = "unavailable"


class DeadlineExceeded(ServiceError):
    kind = "deadline_exceeded"


# The 504's message names both limits a request's deadline comes from.
DEADLINE_PASSED = "the request deadline (BERTSERVE_REQUEST_TIMEOUT_S, or X-Request-Timeout when lower) passed"


# Every class by its kind: one class per kind.
BY_KIND: dict[ErrorKind, type[ServiceError]] = {
    cls.kind: cls
    for cls in (
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
}
