"""Waiting for a condition in tests: the one place that polls.

A test that needs something to have happened waits for that very thing, not for a span of
time that was long enough on the machine it was written on. `until` polls a predicate from
a thread that may block (a subprocess, a socket, another thread's work); `until_async` polls
from a coroutine, so the event loop under test keeps running between looks. Both return the
predicate's first truthy value and fail the test, naming what was awaited, when the timeout
passes first; the timeout only bounds a test that would otherwise hang.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_S = 30.0


def until(predicate: Callable[[], T], timeout: float = TIMEOUT_S, interval: float = 0.01, what: str | None = None) -> T:
    """Call `predicate` every `interval` seconds until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or _name(predicate)}")
        time.sleep(interval)


async def until_async(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = TIMEOUT_S,
    interval: float = 0.001,
    what: str | None = None,
) -> T:
    """`until` for a coroutine: the predicate may be a plain function or return an awaitable
    (a request to the app under test); the loop runs other tasks between looks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or _name(predicate)}")
        await asyncio.sleep(interval)


def _name(predicate: Callable[..., object]) -> str:
    name = getattr(predicate, "__qualname__", repr(predicate))
    if name.endswith("<lambda>"):
        try:
            return inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            pass
    return name
