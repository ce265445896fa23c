"""A runtime that keeps failing: readiness turns 503 naming the model and the error, at once
for an error of the device class, after FAILURES_SICK runs in a row otherwise; liveness
turns 503 once it has lasted BERTSERVE_SICK_GRACE_S; a good run brings readiness back
(unless the device failed: that needs a restart). The failure is injected into the real
sessions of a real served model."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import numpy as np
import pytest

from service.engine.health import FAILURES_SICK
from service.runtime.session import InferenceError
from tests.integration.conftest import Client
from tests.sync import until_async

DEVICE_ERROR = "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA failure 2: out of memory ; GPU=0"


def _break(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    served = client.app.state.bertserve.models["tiny-clf"]  # type: ignore[attr-defined]
    served.inline_max_tokens = 0

    def failing(rows: Sequence[np.ndarray]) -> np.ndarray:
        raise InferenceError(message)

    for session in served.model.every_session:
        monkeypatch.setattr(session, "run", failing)


async def _status(client: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    async def seen() -> httpx.Response | None:
        r = await client.get(path)
        return r if r.status_code == status else None

    return await until_async(seen, interval=0.02, what=f"{path} {status}")


async def test_a_device_error_turns_readiness_then_liveness_503(
    make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_client(sick_grace_s=0.5, stall_timeout_s=0.2) as c:
        assert (await c.get("/health/live")).status_code == 200
        _break(c, monkeypatch, DEVICE_ERROR)
        failed = await c.post("/classify", json={"inputs": "a sentence"})
        assert failed.status_code == 500 and "CUDA" not in failed.text  # nothing internal leaks
        ready = await _status(c, "/health/ready", 503)
        message = ready.json()["error"]["message"]
        assert "tiny-clf" in message and "out of memory" in message, message
        assert (await c.post("/classify", json={"inputs": "refused"})).status_code == 503
        live = await _status(c, "/health/live", 503)
        assert "BERTSERVE_SICK_GRACE_S" in live.json()["error"]["message"]
        monkeypatch.undo()  # the device is back, but a device error needs a restart: still sick
        assert (await c.get("/health/ready")).status_code == 503


async def test_runs_failing_in_a_row_turn_readiness_503_and_a_good_run_restores_it(
    make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_client(stall_timeout_s=0.2) as c:
        _break(c, monkeypatch, "a runtime that fails every run")
        for n in range(FAILURES_SICK):
            r = await c.post("/classify", json={"inputs": f"failing {n}"})
            if r.status_code == 503:  # sick already: the last runs counted
                break
            assert r.status_code == 500
        ready = await _status(c, "/health/ready", 503)
        assert "runs in a row failed" in ready.text and "tiny-clf" in ready.text
        assert (await c.get("/health/live")).status_code == 200  # within the grace
        monkeypatch.undo()
        # Readiness refuses requests, so the model runs again from a direct call.
        served = c.app.state.bertserve.models["tiny-clf"]  # type: ignore[attr-defined]
        encoded = await served.tokenize(["fine again"], truncate=True)
        loop_deadline = 1e12
        await served.submit(encoded.ids, loop_deadline)
        await _status(c, "/health/ready", 200)
