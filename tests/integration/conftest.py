from __future__ import annotations

import asyncio
import threading
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


def hold_runtime(served: Any) -> threading.Event:
    """Hold a served model's first session thread until the event returned is set: its
    batches wait there. A fast-lane batch short enough to run on the event loop would pass
    it by (service/engine/inline.py), so that is turned off for the model first."""
    served.inline_max_tokens = 0
    release = threading.Event()
    served._runtime_pools[0].submit(release.wait)
    return release


@pytest.fixture
def make_client(tiny_repo: Path) -> Client:
    """Start the real app (lifespan included) on the tiny models and talk ASGI to it."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        # One session per model unless a test asks for more: tests that hold the runtime's
        # thread to fill a queue hold the one session there is (tests/integration/test_instances.py
        # covers several). Two intra-op threads, so that it has the fast lane on any machine,
        # as the default plan gives it with two CPUs or more (with one, none): the same code
        # runs on every machine; the tests of the plain path ask for fast_lane=False or one thread.
        defaults = {
            "models": tiny_repo,
            "max_batch_size": 8,
            "max_batch_tokens": 1024,
            "instances": 1,
            "intra_op_threads": 2,
        }
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
