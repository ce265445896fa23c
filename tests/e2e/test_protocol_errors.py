"""Answers from the protocol layer (before any request reaches the app) are in the same
envelope, with an X-Request-ID, as every other error."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from tests.e2e.procs import Server

pytestmark = pytest.mark.e2e

LIMITS = {"BERTSERVE_HEADER_TIMEOUT_S": "0.5", "BERTSERVE_MAX_CONNECTIONS": "2"}


def _answer(sock: socket.socket) -> tuple[str, dict[str, str], dict[str, object]]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (f.split(": ", 1) for f in fields)}
    return status, headers, json.loads(body)


def test_header_timeout_and_connection_cap_answer_in_the_envelope(tiny_repo: Path) -> None:
    with Server(tiny_repo, env=LIMITS) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            status, headers, body = _answer(slow)
        assert status == "HTTP/1.1 408 Request Timeout"
        assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
        assert body["error"]["type"] == "request_timeout"  # type: ignore[index]
        assert "(BERTSERVE_HEADER_TIMEOUT_S)" in body["error"]["message"]  # type: ignore[index]

        first = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        second = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as third:
                status, headers, body = _answer(third)
        finally:
            first.close()
            second.close()
        assert status == "HTTP/1.1 503 Service Unavailable"
        assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
        message = "too many open connections (BERTSERVE_MAX_CONNECTIONS): retry later"
        assert body == {"error": {"type": "unavailable", "message": message, "param": None}}
