"""A front end's CatchUp: a request waits while its front end is not settled (not yet ready,
or taking in a new table), CATCH_UP_S at most; health routes and a down engine never wait."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from service import frontend
from service.frontend import CatchUp
from service.metrics import Metrics
from service.settings import Settings
from service.state import AppState


def _middleware(settled: asyncio.Event, state: AppState) -> tuple[CatchUp, list[str]]:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    follower: Any = SimpleNamespace(settled=settled)
    return CatchUp(app, follower, state), reached


def _http(path: str) -> dict[str, str]:
    return {"type": "http", "path": path}


async def _nothing() -> None:
    return None


def test_a_request_waits_until_its_front_end_settles() -> None:
    async def scenario() -> list[str]:
        settled = asyncio.Event()
        middleware, reached = _middleware(settled, AppState(Settings(), Metrics()))
        request = asyncio.ensure_future(middleware(_http("/classify"), _nothing, _nothing))
        await asyncio.sleep(0.05)
        assert reached == []  # held
        settled.set()
        await asyncio.wait_for(request, 1)
        return reached

    assert asyncio.run(scenario()) == ["/classify"]


def test_health_routes_and_a_down_engine_never_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frontend, "CATCH_UP_S", 30.0)  # a wait would time the test out

    async def scenario() -> list[str]:
        state = AppState(Settings(), Metrics())
        middleware, reached = _middleware(asyncio.Event(), state)
        await asyncio.wait_for(middleware(_http("/health/ready"), _nothing, _nothing), 1)
        await asyncio.wait_for(middleware(_http("/health/live"), _nothing, _nothing), 1)
        state.set_engine_down("the engine process is not answering")
        await asyncio.wait_for(middleware(_http("/embed"), _nothing, _nothing), 1)
        return reached

    assert asyncio.run(scenario()) == ["/health/ready", "/health/live", "/embed"]


def test_the_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frontend, "CATCH_UP_S", 0.05)

    async def scenario() -> list[str]:
        middleware, reached = _middleware(asyncio.Event(), AppState(Settings(), Metrics()))
        await asyncio.wait_for(middleware(_http("/models"), _nothing, _nothing), 1)
        return reached

    assert asyncio.run(scenario()) == ["/models"]
