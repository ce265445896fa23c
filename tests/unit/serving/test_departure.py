"""A client's departure as the protocol adapter tells it (`Departure`): the request waiting on
its rows ends with ClientClosed and what it waited on is cancelled; a cancellation that is not
the departure's stays a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import ClientClosed
from service.request_context import Departure
from service.tasks.common import Call, until_disconnect


async def test_a_departure_cancels_the_wait_and_answers_client_closed() -> None:
    departure = Departure()
    rows: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(until_disconnect(Call(departure=departure), rows))
    await asyncio.sleep(0)
    departure.happened()
    with pytest.raises(ClientClosed):
        await waiting
    assert rows.cancelled()  # in the engine's client this sends the Cancel


async def test_a_client_gone_before_the_wait_is_answered_at_its_first_wait() -> None:
    departure = Departure()
    departure.happened()
    rows: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(ClientClosed):
        await until_disconnect(Call(departure=departure), rows)
    assert rows.cancelled()


async def test_rows_in_time_are_the_answer_and_a_later_departure_touches_nothing() -> None:
    departure = Departure()
    rows: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(rows.set_result, 7)
    assert await until_disconnect(Call(departure=departure), rows) == 7
    departure.happened()  # the connection closes after the answer: this task is not cancelled
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    departure = Departure()
    rows: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(until_disconnect(Call(departure=departure), rows))
    await asyncio.sleep(0)
    waiting.cancel()  # the server's own, e.g. at shutdown
    departure.happened()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert rows.cancelled()


async def test_without_a_departure_the_receive_channel_is_watched() -> None:
    left = asyncio.Event()
    rows: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(until_disconnect(Call(disconnected=left.wait), rows))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    left.set()
    with pytest.raises(ClientClosed):
        await waiting
    assert rows.cancelled()
