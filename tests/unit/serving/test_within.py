"""A request's wait for its rows (`_within`): cancelled by a client that went away, it must
leave nothing for asyncio to report."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import numpy as np
import pytest

from service.engine.model import _within
from service.errors import DeadlineExceeded


async def test_a_cancelled_wait_with_rows_half_done_logs_nothing() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    rows: list[asyncio.Future[np.ndarray]] = [loop.create_future() for _ in range(2)]
    waiting = asyncio.ensure_future(_within(rows, loop.time() + 10))
    await asyncio.sleep(0)
    rows[0].set_result(np.zeros(2))  # one row answered, the other still queued
    waiting.cancel()  # the client goes away
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert rows[1].cancelled()
    del waiting
    gc.collect()
    await asyncio.sleep(0)
    # It was logged at error level once per such request: "_GatheringFuture exception was
    # never retrieved".
    assert reported == []


async def test_rows_past_the_deadline_raise_deadline_exceeded() -> None:
    loop = asyncio.get_running_loop()
    rows: list[asyncio.Future[np.ndarray]] = [loop.create_future()]
    with pytest.raises(DeadlineExceeded):
        await _within(rows, loop.time() + 0.01)
