"""Priority levels in the batcher, with a fake runner and an injected clock: interactive items
first, batch items in the room left, aging, the room of each level, and every future
resolved whatever happens to a level's items."""

from __future__ import annotations

import asyncio

import pytest

from service.batching import BATCH, INTERACTIVE, Batcher
from service.batching import batcher as batching
from service.errors import DeadlineExceeded, Overloaded, Unavailable
from tests.sync import until_async
from tests.unit.batching.test_batcher import FakeRunner, Recorder, far


class Clock:
    """The batcher's clock (when items were queued, how old they are), moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    runner: FakeRunner,
    clock: Clock,
    size: int = 2,
    queue: int = 8,
    aging_s: float = 5.0,
    bulk_beside_live: int | None = None,  # no bound unless a test asks for it
) -> tuple[Batcher[str, str], Recorder]:
    rec = Recorder()
    batcher: Batcher[str, str] = Batcher(
        runner,
        max_batch_size=size,
        max_batch_tokens=1000,
        max_queue_items=queue,
        observer=rec,
        aging_s=aging_s,
        batch_share=0.5,
        bulk_beside_live=bulk_beside_live,
        clock=clock,
    )
    batcher.start()
    return batcher, rec


async def hold(runner: FakeRunner, batcher: Batcher[str, str]) -> list[asyncio.Future[str]]:
    """Keep the runner busy with one interactive item, so what comes next queues."""
    runner.gate = asyncio.Event()
    busy = batcher.submit([("busy", 1)], far())
    await until_async(lambda: runner.calls == [["busy"]])
    return busy


def queue(batcher: Batcher[str, str], names: str, priority: str) -> list[asyncio.Future[str]]:
    return [batcher.submit([(name, 1)], far(), priority=priority)[0] for name in names]  # type: ignore[arg-type]


async def test_interactive_items_go_before_batch_items_queued_earlier() -> None:
    runner, clock = FakeRunner(), Clock()
    batcher, rec = make(runner, clock)
    busy = await hold(runner, batcher)
    bulk = queue(batcher, "bcde", BATCH)
    live = queue(batcher, "xy", INTERACTIVE)
    assert rec.depths == {BATCH: 4, INTERACTIVE: 2}
    runner.gate.set()  # type: ignore[union-attr]
    await asyncio.gather(*busy, *bulk, *live)
    assert runner.calls == [["busy"], ["x", "y"], ["b", "c"], ["d", "e"]]
    assert rec.depths == {BATCH: 0, INTERACTIVE: 0}
    await batcher.stop()


async def test_batch_items_fill_the_room_the_interactive_ones_leave() -> None:
    runner, clock = FakeRunner(), Clock()
    batcher, rec = make(runner, clock, size=4)
    busy = await hold(runner, batcher)
    bulk = queue(batcher, "bcde", BATCH)
    live = queue(batcher, "x", INTERACTIVE)
    runner.gate.set()  # type: ignore[union-attr]
    assert await asyncio.gather(*live) == ["xx"]
    await asyncio.gather(*busy, *bulk)
    assert runner.calls == [["busy"], ["x", "b", "c", "d"], ["e"]]
    assert [level for level, _ in rec.waits] == [INTERACTIVE, INTERACTIVE, BATCH, BATCH, BATCH, BATCH]
    await batcher.stop()


@pytest.mark.parametrize(("waited", "order"), [(4.9, ["x", "y"]), (5.0, ["b", "c"])])
async def test_a_batch_item_older_than_the_bound_is_served_as_interactive(waited: float, order: list[str]) -> None:
    runner, clock = FakeRunner(), Clock()
    batcher, rec = make(runner, clock, aging_s=5.0)
    busy = await hold(runner, batcher)
    bulk = queue(batcher, "bc", BATCH)
    clock.now += waited
    live = queue(batcher, "xy", INTERACTIVE)
    runner.gate.set()  # type: ignore[union-attr]
    await asyncio.gather(*busy, *bulk, *live)
    assert runner.calls[1] == order
    # The queue wait is measured on the same clock: an aged item waited the bound.
    assert max(wait for level, wait in rec.waits if level == BATCH) == pytest.approx(waited)
    await batcher.stop()


async def test_aged_items_merge_with_interactive_ones_by_age() -> None:
    runner, clock = FakeRunner(), Clock()
    batcher, _ = make(runner, clock, size=3, aging_s=5.0)
    busy = await hold(runner, batcher)
    live_old = queue(batcher, "x", INTERACTIVE)
    clock.now += 1
    bulk = queue(batcher, "bc", BATCH)
    clock.now += 1
    live_new = queue(batcher, "y", INTERACTIVE)
    clock.now += 5  # b and c are now past the bound; x is older still, y younger
    runner.gate.set()  # type: ignore[union-attr]
    await asyncio.gather(*busy, *live_old, *bulk, *live_new)
    assert runner.calls == [["busy"], ["x", "b", "c"], ["y"]]
    await batcher.stop()


async def test_batch_items_meet_their_room_first_while_interactive_ones_are_admitted() -> None:
    runner, clock = FakeRunner(), Clock()
    batcher, rec = make(runner, clock, queue=8)  # batch items may hold half: 4
    assert (batcher.capacity(INTERACTIVE), batcher.capacity(BATCH)) == (8, 4)
    busy = await hold(runner, batcher)
    bulk = queue(batcher, "bcde", BATCH)
    assert batcher.full(BATCH) and not batcher.full(INTERACTIVE)
    with pytest.raises(Overloaded, match=r"batch-priority room full at 4 items \(BERTSERVE_BATCH_QUEUE_SHARE"):
        batcher.submit([("f", 1)], far(), priority=BATCH)
    live = queue(batcher, "wxyz", INTERACTIVE)
    assert batcher.room(INTERACTIVE) == 0
    with pytest.raises(Overloaded, match=r"queue full at 8 items \(BERTSERVE_MAX_QUEUE_ITEMS\)"):
        batcher.submit([("v", 1)], far())
    assert rec.by_level == {("overloaded", BATCH): 1, ("overloaded", INTERACTIVE): 1}
    batcher.count_refusal(BATCH)  # the fast 429, counted at its level
    assert rec.by_level[("overloaded", BATCH)] == 2
    runner.gate.set()  # type: ignore[union-attr]
    await asyncio.gather(*busy, *bulk, *live)
    await batcher.stop()


async def test_an_interactive_flood_refuses_batch_items_too() -> None:
    runner, clock = FakeRunner(), Clock()
    batcher, _ = make(runner, clock, queue=4)
    busy = await hold(runner, batcher)
    live = queue(batcher, "wxyz", INTERACTIVE)
    with pytest.raises(Overloaded, match=r"queue full at 4 items"):
        batcher.submit([("b", 1)], far(), priority=BATCH)
    runner.gate.set()  # type: ignore[union-attr]
    await asyncio.gather(*busy, *live)
    await batcher.stop()


async def test_expired_and_cancelled_items_of_each_level_are_resolved_and_counted() -> None:
    runner, clock = FakeRunner(), Clock()
    batcher, rec = make(runner, clock, size=4, queue=16)
    loop = asyncio.get_running_loop()
    busy = await hold(runner, batcher)
    soon = loop.time() + 0.01
    late = [batcher.submit([(n, 1)], soon, priority=level)[0] for n, level in (("p", BATCH), ("q", INTERACTIVE))]
    gone = queue(batcher, "r", BATCH) + queue(batcher, "s", INTERACTIVE)
    kept = queue(batcher, "bc", BATCH) + queue(batcher, "xy", INTERACTIVE)
    for future in gone:
        future.cancel()
    await until_async(lambda: loop.time() > soon)
    runner.gate.set()  # type: ignore[union-attr]
    assert await asyncio.gather(*kept) == ["bb", "cc", "xx", "yy"]
    for future in late:
        with pytest.raises(DeadlineExceeded):
            await future
    await asyncio.gather(*busy)
    ran = {name for call in runner.calls for name in call}
    assert ran.isdisjoint("pqrs")
    assert rec.by_level == {
        ("timeout", BATCH): 1,
        ("timeout", INTERACTIVE): 1,
        ("cancelled", BATCH): 1,
        ("cancelled", INTERACTIVE): 1,
    }
    assert batcher.queued == 0 and rec.depths == {BATCH: 0, INTERACTIVE: 0}
    await batcher.stop()


async def test_stop_answers_every_level_503() -> None:
    runner, clock = FakeRunner(), Clock()
    batcher, rec = make(runner, clock)
    busy = await hold(runner, batcher)
    waiting = queue(batcher, "bc", BATCH) + queue(batcher, "x", INTERACTIVE)
    await batcher.stop()
    for future in [*busy, *waiting]:
        with pytest.raises(Unavailable):
            await future
    assert batcher.queued == 0 and rec.depths == {BATCH: 0, INTERACTIVE: 0}


async def test_beside_recent_live_traffic_bulk_takes_a_few_rows_of_a_batch_and_alone_the_whole() -> None:
    """While interactive items came within LIVE_RECENT_S, a batch led by them holds at most
    `bulk_beside_live` young batch items (here 2), and with a single runner so does a batch of
    bulk alone; once live traffic has been quiet that long, bulk work runs full batches again."""
    runner, clock = FakeRunner(), Clock()
    batcher, _ = make(runner, clock, size=8, queue=64, bulk_beside_live=2)
    assert batcher.bulk_beside_live == 2
    busy = await hold(runner, batcher)  # an interactive item: live traffic now
    bulk = queue(batcher, "bcdef", BATCH)
    live = queue(batcher, "x", INTERACTIVE)
    runner.gate.set()  # type: ignore[union-attr]
    await asyncio.gather(*busy, *bulk, *live)
    assert runner.calls == [["busy"], ["x", "b", "c"], ["d", "e"], ["f"]]

    runner.calls.clear()
    clock.now += batching.LIVE_RECENT_S + 0.1  # no live request since
    runner.gate = asyncio.Event()
    first = queue(batcher, "g", BATCH)
    await until_async(lambda: runner.calls == [["g"]])
    rest = queue(batcher, "hijklm", BATCH)
    runner.gate.set()
    await asyncio.gather(*first, *rest)
    assert runner.calls == [["g"], ["h", "i", "j", "k", "l", "m"]]
    await batcher.stop()


async def test_aged_batch_items_ride_as_interactive_beside_live_traffic() -> None:
    """The bound is on young batch items: once past the aging bound they ride as interactive
    ones do, however many, so bulk work progresses whatever the live load."""
    runner, clock = FakeRunner(), Clock()
    batcher, _ = make(runner, clock, size=8, queue=64, bulk_beside_live=1)
    busy = await hold(runner, batcher)
    bulk = queue(batcher, "bcdef", BATCH)
    clock.now += 6.0  # past the 5 s bound
    live = queue(batcher, "x", INTERACTIVE)  # and live traffic now
    runner.gate.set()  # type: ignore[union-attr]
    await asyncio.gather(*busy, *bulk, *live)
    assert runner.calls == [["busy"], ["b", "c", "d", "e", "f", "x"]]
    await batcher.stop()
