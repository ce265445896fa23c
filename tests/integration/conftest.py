from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.settings import Settings

Client = Callable[..., Any]


@pytest.fixture
def make_client(tiny_repo: Path) -> Client:
    """Start the real app (lifespan included) on the tiny models and talk ASGI to it."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(
            models=overrides.pop("models", tiny_repo), max_batch_size=8, max_batch_tokens=1024, **overrides
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                client.app = app  # type: ignore[attr-defined]
                yield client

    return factory


@pytest.fixture
async def client(make_client: Client) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c
