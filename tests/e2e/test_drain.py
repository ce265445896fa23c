"""SIGTERM drains: readiness and new requests turn 503, accepted requests finish, exit 0."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.e2e.procs import DEFAULT_MODELS, Server

pytestmark = pytest.mark.e2e

# 64 reviews of ~256 tokens: a couple of seconds of work on 2 cores, so it is in flight
# when the signal arrives.
SLOW_BODY = {"inputs": ["a long and winding review of a film that goes on " * 30] * 64}


def test_sigterm_finishes_accepted_requests_then_exits() -> None:
    server = Server(DEFAULT_MODELS, env={"BERTSERVE_DRAIN_TIMEOUT_S": "20"})
    with server:
        result: dict[str, object] = {}

        def slow() -> None:
            r = httpx.post(f"{server.url}/classify", json=SLOW_BODY, timeout=60)
            result["status"] = r.status_code
            result["predictions"] = len(r.json().get("predictions", []))
            result["done_at"] = time.monotonic()

        worker = threading.Thread(target=slow)
        worker.start()
        time.sleep(0.5)  # the slow request is accepted and running
        assert server.proc is not None
        server.proc.terminate()  # SIGTERM
        time.sleep(0.2)

        ready = httpx.get(f"{server.url}/health/ready", timeout=5)
        refused = httpx.post(f"{server.url}/classify", json={"inputs": "new"}, timeout=5)
        assert "done_at" not in result, "the slow request should still be running"
        assert ready.status_code == 503
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "unavailable"

        worker.join(60)
        assert result["status"] == 200 and result["predictions"] == 64
        assert server.proc.wait(30) == 0
