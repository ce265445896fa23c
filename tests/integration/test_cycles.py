"""No request leaves objects in a reference cycle: full garbage collections are held back
to quiet moments (service/collector.py), so what a cycle holds would stay until then."""

from __future__ import annotations

import asyncio
import gc
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from service import collector
from service.app import create_app
from service.settings import Settings
from tests.integration.conftest import Client
from tests.sync import until_async

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/classify", {"inputs": ["a fine film", "a dull film"]}),
    ("/embed", {"inputs": "a fine film"}),
    ("/v1/embeddings", {"input": ["a fine film"], "model": "tiny-emb"}),
    ("/classify", {"inputs": ""}),  # 422 from the schema
    ("/classify", {"inputs": "a fine film", "model": "nope"}),  # 404 from the serving layer
    ("/rerank", {"query": "film", "texts": ["a fine film", "a dull day"]}),
]


async def _asgi(app: Any, path: str, payload: dict[str, Any]) -> int:
    body = json.dumps(payload).encode()
    given = False

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    return status


@pytest.fixture
def saved_garbage() -> Any:
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    yield gc.garbage
    gc.set_debug(0)
    gc.garbage.clear()


# Both ways a request is served whatever the machine: the fast lane exists only with more
# than one intra-op thread, which the default plan gives only with more than one CPU.
FAST_LANE = {"intra_op_threads": 2}
NO_FAST_LANE = {"intra_op_threads": 1}


@pytest.mark.parametrize("lane", [FAST_LANE, NO_FAST_LANE], ids=["fast-lane", "no-fast-lane"])
async def test_requests_leave_no_reference_cycles(
    tiny_repo: Path, saved_garbage: list[Any], lane: dict[str, int]
) -> None:
    # The app alone, no test client: the client's own objects would be counted too.
    app = create_app(Settings(models=tiny_repo, instances=1, **lane))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        state = app.state.bertserve
        await until_async(lambda: state.unready_reason() is None)
        assert (state.models["tiny-clf"].model.fast is not None) == (lane is FAST_LANE)
        statuses = [await _asgi(app, path, payload) for path, payload in REQUESTS]
        assert statuses == [200, 200, 200, 422, 404, 200]
        gc.collect()
        saved_garbage.clear()
        for _ in range(5):
            for path, payload in REQUESTS:
                await _asgi(app, path, payload)
        gc.collect()
        kinds = Counter(type(o).__name__ for o in saved_garbage)
        assert not saved_garbage, f"{len(saved_garbage)} objects in cycles: {kinds.most_common(10)}"


async def test_full_collections_wait_for_quiet_moments_while_serving(make_client: Client) -> None:
    before = gc.get_threshold()
    async with make_client():
        assert gc.get_threshold()[2] == collector.NEVER
    assert gc.get_threshold() == before


def test_a_full_collection_is_due_when_quiet_or_when_long_overdue() -> None:
    assert not collector.full_collection_due(collector.QUIET_EVERY_S - 1, quiet=True)
    assert collector.full_collection_due(collector.QUIET_EVERY_S, quiet=True)
    assert not collector.full_collection_due(collector.AT_LEAST_EVERY_S - 1, quiet=False)
    assert collector.full_collection_due(collector.AT_LEAST_EVERY_S, quiet=False)
