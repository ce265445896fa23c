"""The error tree of the service and its single mapping to HTTP.

Domain code raises these; only `api/` turns them into responses, through `status` and `type`.
"""

from __future__ import annotations


class ServiceError(Exception):
    status = 500
    type = "internal_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidInput(ServiceError):
    status = 422
    type = "invalid_request"


class ModelNotFound(ServiceError):
    status = 404
    type = "model_not_found"


class BodyTooLarge(ServiceError):
    status = 413
    type = "request_too_large"


class Unauthorized(ServiceError):
    status = 401
    type = "unauthorized"


class Overloaded(ServiceError):
    """The queue is full: refused at once, never queued."""

    status = 429
    type = "overloaded"
    retry_after_s = 1


class DeadlineExceeded(ServiceError):
    status = 504
    type = "timeout"


class Unavailable(ServiceError):
    """Not ready yet, or draining."""

    status = 503
    type = "unavailable"


class InferenceFailed(ServiceError):
    """The runtime raised on this item; the message sent to the client stays generic."""

    status = 500
    type = "internal_error"
