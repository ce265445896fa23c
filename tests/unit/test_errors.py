"""The error kinds and their one table to HTTP: one class per kind, one renderer, and the docs
generated from the table."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson
import pytest

from service import errors
from service.api.schemas import MODEL_ROUTE_ERRORS, error_responses
from service.http_errors import TABLE, for_status, markdown_table, raw_http, render

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_class_has_its_own_kind_and_the_kind_its_wire() -> None:
    defined = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ServiceError)}
    assert defined == set(errors.BY_KIND.values())
    assert set(TABLE) == set(errors.BY_KIND) and all(cls.kind == kind for kind, cls in errors.BY_KIND.items())
    for wire in TABLE.values():
        assert 400 <= wire.status < 600 and wire.type and wire.description


@pytest.mark.parametrize("cls", errors.BY_KIND.values())
def test_render_gives_the_envelope_and_the_request_id(cls: type[errors.ServiceError]) -> None:
    status, headers, body = render(cls("what happened", "param"), "rid-1")
    assert status == TABLE[cls.kind].status
    assert headers["X-Request-ID"] == "rid-1" and headers["Content-Type"] == "application/json"
    error = orjson.loads(body)["error"]
    assert error["type"] == TABLE[cls.kind].type and error["param"] == "param"
    # A 500 never says more than a generic message and where to find the details.
    assert error["message"] == ("what happened (request id rid-1)" if status == 500 else "what happened")


def test_headers_that_go_with_a_status() -> None:
    assert render(errors.Overloaded("x"), "r")[1]["Retry-After"] == "1"
    assert render(errors.Unauthorized("x"), "r")[1]["WWW-Authenticate"].startswith("Bearer")
    assert render(errors.BodyTooLarge("x"), "r")[1]["Connection"] == "close"


def test_raw_http_is_a_whole_response() -> None:
    raw = raw_http(errors.RequestTimeout("too slow"), "rid-2")
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 408 Request Timeout"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert fields["x-request-id"] == "rid-2" and fields["connection"] == "close"
    assert int(fields["content-length"]) == len(body)
    assert orjson.loads(body)["error"]["type"] == "request_timeout"


def test_framework_statuses_map_into_the_tree() -> None:
    assert type(for_status(404, "Not Found")) is errors.NotFound
    assert type(for_status(405, "Method Not Allowed")) is errors.MethodNotAllowed
    assert type(for_status(418, "teapot")) is errors.ServiceError


def test_readme_error_table_is_the_table() -> None:
    assert markdown_table() in (ROOT / "README.md").read_text()


def test_openapi_error_responses_come_from_the_table() -> None:
    responses = error_responses(*MODEL_ROUTE_ERRORS)
    for status in MODEL_ROUTE_ERRORS:
        described = [wire.description for wire in TABLE.values() if wire.status == status]
        assert described and responses[status]["description"] == "; ".join(described)


def test_no_module_builds_an_error_response_by_hand() -> None:
    """Statuses live in http_errors.py only: no other module of the package writes a 4xx or
    5xx status as a number, except to list a route's documented errors (error_responses)."""
    statuses = {wire.status for wire in TABLE.values()}
    offenders = []
    for path in (ROOT / "service").rglob("*.py"):
        # http_errors.py is the table; api/errors.py maps the framework's own statuses onto it;
        # export/ answers no HTTP (its numbers are token counts and sizes).
        if path in (ROOT / "service" / "http_errors.py", ROOT / "service" / "api" / "errors.py"):
            continue
        if "export" in path.relative_to(ROOT).parts:
            continue
        tree = ast.parse(path.read_text())
        documented = {
            id(arg)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "error_responses"
            for arg in node.args
        }
        documented |= {
            id(elt)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MODEL_ROUTE_ERRORS"
            for elt in getattr(node.value, "elts", [])
        }
        for node in ast.walk(tree):
            value = getattr(node, "value", None)
            if (
                isinstance(node, ast.Constant)
                and type(value) is int
                and value in statuses
                and id(node) not in documented
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value}")
    assert offenders == []
