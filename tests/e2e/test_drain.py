"""SIGTERM drains: readiness and new requests turn 503, accepted requests finish, exit 0.

The request in flight is held open by its client (half its body sent), so it is in flight
when the signal arrives whatever the machine's speed, not because inference is slow."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest

from tests.e2e.procs import DEFAULT_MODELS, Server

pytestmark = pytest.mark.e2e

BODY = json.dumps({"inputs": ["a review that arrives slowly", "and a second one"]}).encode()


def _inflight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return float(re.search(r"^bertserve_inflight_requests (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("instances", ["1", "2"])  # one session per model, or two (a batcher with two runners)
def test_sigterm_finishes_accepted_requests_then_exits(instances: str) -> None:
    server = Server(DEFAULT_MODELS, env={"BERTSERVE_DRAIN_TIMEOUT_S": "20", "BERTSERVE_INSTANCES": instances})
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=30) as held:
        head = (
            f"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode()
        held.sendall(head + BODY[:10])
        deadline = time.monotonic() + 10
        while _inflight(server.url) < 2:  # the held request, plus the /metrics request itself
            assert time.monotonic() < deadline, "the held request never reached the app"
            time.sleep(0.02)
        assert server.proc is not None
        server.proc.terminate()  # SIGTERM
        ready = _until_status(f"{server.url}/health/ready", 503)
        refused = httpx.post(f"{server.url}/classify", json={"inputs": "new"}, timeout=5)
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "unavailable"
        assert "draining" in ready.json()["error"]["message"]
        assert server.proc.poll() is None, "exited with a request still in flight"

        held.sendall(BODY[10:])
        answer = _read_response(held)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert len(json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"]) == 2
        assert server.proc.wait(30) == 0


def _until_status(url: str, status: int, timeout_s: float = 5) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while (r := httpx.get(url, timeout=5)).status_code != status:
        assert time.monotonic() < deadline, f"{url} still {r.status_code}"
        time.sleep(0.01)
    return r


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body
