"""The one mapping from errors to HTTP responses, all in the envelope
{"error": {"type", "message", "param"}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from service.api.responses import JSONBytes, error_body
from service.errors import Overloaded, ServiceError

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    message = exc.message
    if exc.status >= 500 and exc.status not in (503, 504):
        # Internal details go to the log only.
        message = f"{exc.message} (request id {request.state.request_id})"
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
    return JSONBytes(error_body(exc.type, message, exc.param), status_code=exc.status, headers=headers)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # For a union (str | list[str]) pydantic reports one error per branch: the deepest
    # location is the most specific one (inputs[1] rather than inputs).
    found = exc.errors()
    first = max(found, key=lambda e: len(e.get("loc", ()))) if found else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = _param(loc)
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        message, param = "body is not valid JSON", "body"
    elif not loc and first.get("type") in ("model_attributes_type", "dict_type"):
        message, param = "body must be a JSON object, sent with Content-Type: application/json", "body"
    elif first.get("type") in ("string_too_short", "string_pattern_mismatch", "too_short"):
        message = f"{param} is empty: send at least one non-blank text"
    elif param:
        message = f"{param}: {message}"
    return JSONBytes(error_body("invalid_request", message, param), status_code=422)


def _param(loc: list[str]) -> str | None:
    """inputs.3 -> inputs[3]; union branch names that pydantic adds (str, list[str]) dropped."""
    out = ""
    for part in loc:
        if part.isdigit():
            out += f"[{part}]"
        elif not part.isidentifier() or part in ("str", "int", "float", "bool"):
            continue  # a union branch label (constrained-str, list[int]...), not a field
        else:
            out += f".{part}" if out else part
    return out or None


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it could not decode (invalid UTF-8, JSON nested past
        # the parser's depth): the same class of error as malformed JSON.
        return JSONBytes(error_body("invalid_request", "body is not valid UTF-8 JSON", "body"), status_code=422)
    type_ = _HTTP_TYPES.get(exc.status_code, "http_error")
    return JSONBytes(error_body(type_, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
