"""Foreign exceptions of the HTTP layer (pydantic's validation errors, starlette's HTTP
errors) mapped onto the service's error tree, and every error answered through the one
renderer in `service.http_errors`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from service.errors import InvalidInput, ServiceError
from service.http_errors import for_status, render
from service.request_context import context_of


def respond(error: ServiceError, request_id: str, extra: Mapping[str, str] | None = None) -> Response:
    status, headers, body = render(error, request_id)
    return Response(body, status_code=status, headers={**headers, **(extra or {})})


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return respond(exc, context_of(request.scope).request_id)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return respond(invalid_input(exc.errors()), context_of(request.scope).request_id)


def invalid_input(found: Any) -> InvalidInput:
    """The most specific of pydantic's errors, as one message naming the parameter."""
    if not found:
        return InvalidInput("invalid request")
    first = max(found, key=_specificity)
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = _param(loc)
    kind = first.get("type")
    message = str(first.get("msg", "invalid request"))
    if kind == "json_invalid":
        return InvalidInput("body is not valid JSON", "body")
    if not loc and kind in ("model_attributes_type", "dict_type"):
        return InvalidInput("body must be a JSON object, sent with Content-Type: application/json", "body")
    if kind == "too_short":
        return InvalidInput(f"{param} is empty: send at least one text", param)
    if kind in ("string_too_short", "string_pattern_mismatch"):
        return InvalidInput(f"{param} is empty: send a text with at least one non-blank character", param)
    return InvalidInput(f"{param}: {message}" if param else message, param)


def _specificity(error: Any) -> tuple[int, bool]:
    """For a union (str | list[str]) pydantic reports one error per branch. The deepest
    location is the most specific (inputs[1] rather than inputs); at equal depth, a branch
    that merely had the wrong type says least ("Input should be a valid string" for [])."""
    return len(error.get("loc", ())), not str(error.get("type", "")).endswith("_type")


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
        # FastAPI's answer to a body it could not decode, the parser's error as its cause:
        # the same class of error as malformed JSON, told apart for the client.
        return respond(undecodable(exc.__cause__), context_of(request.scope).request_id)
    # The framework's own headers stay (a 405's Allow lists the methods the route takes).
    return respond(for_status(exc.status_code, str(exc.detail)), context_of(request.scope).request_id, exc.headers)


def undecodable(cause: BaseException | None) -> InvalidInput:
    """Why a body did not decode: JSON nested past the parser's depth (Python's json gives
    up at its recursion limit) or bytes that are not UTF-8 JSON."""
    if isinstance(cause, RecursionError):
        return InvalidInput("body is JSON nested too deeply to parse", "body")
    return InvalidInput("body is not valid UTF-8 JSON", "body")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
