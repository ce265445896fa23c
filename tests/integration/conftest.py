from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.settings import Settings

Client = Callable[..., Any]


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 60) -> None:
    """The models load in the background: wait for readiness as a load balancer would."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (r := await client.get("/health/ready")).status_code != 200:
        if "could not be loaded" in r.text or loop.time() > deadline:
            raise RuntimeError(f"not ready: {r.text}")
        await asyncio.sleep(0.01)


@pytest.fixture
def make_client(tiny_repo: Path) -> Client:
    """Start the real app (lifespan included) on the tiny models and talk ASGI to it."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        # One session per model unless a test asks for more: tests that hold the runtime's
        # thread to fill a queue hold the one session there is (tests/integration/test_instances.py
        # covers several).
        defaults = {"models": tiny_repo, "max_batch_size": 8, "max_batch_tokens": 1024, "instances": 1}
        settings = Settings(**{**defaults, **overrides})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                client.app = app  # type: ignore[attr-defined]
                await wait_ready(client)
                yield client

    return factory


@pytest.fixture
async def client(make_client: Client) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c
