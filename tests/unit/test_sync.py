"""The tests' one waiting helper: the predicate's first truthy value, or a failure naming
what was awaited."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.sync import until, until_async


def test_until_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert until(lambda: next(counter) >= 3 and "there", interval=0) == "there"


def test_until_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="the moon"):
        until(lambda: False, timeout=0, what="the moon")


async def test_until_async_lets_the_loop_run_and_awaits_an_awaitable_predicate() -> None:
    done = asyncio.Event()
    asyncio.get_running_loop().call_soon(done.set)

    async def is_done() -> bool:
        return done.is_set()

    assert await until_async(is_done) is True
    with pytest.raises(AssertionError, match="timed out"):
        await until_async(lambda: False, timeout=0)
