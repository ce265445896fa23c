"""Batching defaults that follow the execution provider: a GPU takes larger batches, has no
fill floor and drains a longer queue in the same time (service/batching/sizing.py). The
provider is faked on a real session: the branch is chosen by its name alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.batching.sizing import CPU_MIN_FILL
from service.engine.model import LocalModel
from service.metrics import Metrics
from service.runtime.loader import load_repository
from service.runtime.session import CUDA
from service.settings import Settings
from tests.integration.conftest import Client


def _batcher_limits(tiny_repo: Path, cuda: bool, **settings: object) -> tuple[int, int, float]:
    config = Settings(models=tiny_repo, instances=1, **settings)  # type: ignore[arg-type]
    model = next(m for m in load_repository(config) if m.name == "tiny-clf")
    try:
        if cuda:
            model.sessions[0].provider = CUDA
        with ThreadPoolExecutor(1) as pool:
            batcher = LocalModel(model, config, Metrics(), pool).batcher
        return batcher.max_batch_size, batcher.max_queue_items, batcher.min_fill
    finally:
        model.close()


@pytest.mark.parametrize(("cuda", "expected"), [(False, (32, 1024, CPU_MIN_FILL)), (True, (128, 8192, 0.0))])
def test_unset_batching_settings_follow_the_provider(tiny_repo: Path, cuda: bool, expected: tuple) -> None:  # type: ignore[type-arg]
    assert _batcher_limits(tiny_repo, cuda) == expected


def test_set_batching_settings_win_on_either_provider(tiny_repo: Path) -> None:
    for cuda in (False, True):
        limits = _batcher_limits(tiny_repo, cuda, max_batch_size=7, max_queue_items=99, min_batch_fill=0.5)
        assert limits == (7, 99, 0.5)


async def test_models_lists_the_batching_limits_in_force(make_client: Client) -> None:
    async with make_client(max_queue_items=99) as c:
        listed = {m["name"]: m for m in (await c.get("/models")).json()["models"]}
        limits = {k: listed["tiny-clf"][k] for k in ("max_batch_size", "max_batch_tokens", "max_queue_items")}
        assert limits == {"max_batch_size": 8, "max_batch_tokens": 1024, "max_queue_items": 99}  # as the fixture sets
