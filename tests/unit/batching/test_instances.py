"""The batcher with several fake runners (one per session of a model): batches go to free
runners only, and a runner that fails or stalls loses nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from service.batching import Batcher
from service.errors import InferenceFailed, Unavailable


class GatedRunner:
    """Doubles each payload once its gate opens; counts how many batches it runs at once;
    fails every batch when `broken`, never returns when `stuck`."""

    def __init__(self, number: int, journal: list[tuple[int, list[str]]]) -> None:
        self.number = number
        self.journal = journal
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = 0
        self.most_at_once = 0
        self.broken = False
        self.stuck = False

    async def __call__(self, payloads: list[str]) -> Sequence[str]:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.journal.append((self.number, list(payloads)))
        try:
            await self.gate.wait()
            if self.stuck:
                await asyncio.Event().wait()  # a run that never returns
            if self.broken:
                raise RuntimeError("session lost")
            return [p * 2 for p in payloads]
        finally:
            self.running -= 1


def make(count: int, **kw: int) -> tuple[Batcher[str, str], list[GatedRunner], list[tuple[int, list[str]]]]:
    journal: list[tuple[int, list[str]]] = []
    runners = [GatedRunner(i, journal) for i in range(count)]
    opts = {"max_batch_size": 2, "max_batch_tokens": 1000, "max_queue_items": 64, **kw}
    batcher: Batcher[str, str] = Batcher(runners, **opts)
    batcher.start()
    return batcher, runners, journal


def far() -> float:
    return asyncio.get_running_loop().time() + 60


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_batches_go_to_free_runners_only() -> None:
    batcher, runners, journal = make(3)
    for runner in runners:
        runner.gate.clear()
    futures = [f for i in range(8) for f in batcher.submit([(f"x{i}", 1)], far())]
    await settle()
    # Three runners, three batches of two running; the other two items wait for a free one.
    assert [number for number, _ in journal] == [0, 1, 2]
    assert batcher.busy == 3 and batcher.queued == 2
    runners[1].gate.set()
    await settle()
    assert [number for number, _ in journal] == [0, 1, 2, 1]  # only runner 1 was free
    for runner in runners:
        runner.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [f"x{i}" * 2 for i in range(8)]
    assert all(runner.most_at_once == 1 for runner in runners)
    assert batcher.busy == 0
    await batcher.stop()


async def test_the_lowest_numbered_free_runner_takes_the_batch() -> None:
    """At low load one session serves everything: its caches stay warm, the others idle."""
    batcher, _, journal = make(4)
    for i in range(5):
        assert await asyncio.wait_for(asyncio.gather(*batcher.submit([(f"x{i}", 1)], far())), 5) == [f"x{i}" * 2]
    assert [number for number, _ in journal] == [0] * 5
    await batcher.stop()


async def test_a_failing_runner_fails_only_its_own_items() -> None:
    batcher, runners, journal = make(2)
    runners[0].gate.clear()
    runners[1].broken = True
    first = batcher.submit([("a", 1), ("b", 1)], far())  # runner 0, held
    await settle()
    second = batcher.submit([("c", 1), ("d", 1)], far())  # runner 1, which fails
    await settle()
    runners[0].gate.set()
    assert await asyncio.wait_for(asyncio.gather(*first), 5) == ["aa", "bb"]
    outcomes = await asyncio.wait_for(asyncio.gather(*second, return_exceptions=True), 5)
    assert all(isinstance(o, InferenceFailed) for o in outcomes)
    # The failed batch was retried item by item on its own runner, as a poison input would be.
    assert journal[1:] == [(1, ["c", "d"]), (1, ["c"]), (1, ["d"])]
    # The broken runner is free again, and the next batch still gets an answer.
    later = batcher.submit([("e", 1)], far())
    assert await asyncio.wait_for(asyncio.gather(*later), 5) == ["ee"]
    await batcher.stop()


async def test_a_stalled_runner_is_seen_on_its_own_and_the_others_keep_serving() -> None:
    batcher, runners, _ = make(2)
    runners[0].stuck = True
    stuck = batcher.submit([("a", 1), ("b", 1)], far())
    await settle()
    since = batcher.running_since()
    assert list(since) == [0] and since[0] <= time.monotonic()
    # Runner 1 answers everything that comes meanwhile, one batch after another.
    for i in range(6):
        assert await asyncio.wait_for(asyncio.gather(*batcher.submit([(f"x{i}", 1)], far())), 5) == [f"x{i}" * 2]
    assert batcher.running_since() == since and batcher.busy == 1
    assert not any(f.done() for f in stuck)
    await batcher.stop()
    assert all(isinstance(f.exception(), Unavailable) for f in stuck)


async def test_stop_resolves_what_every_runner_holds_and_the_queue() -> None:
    batcher, runners, _ = make(2)
    for runner in runners:
        runner.gate.clear()
    futures = [f for i in range(7) for f in batcher.submit([(f"x{i}", 1)], far())]
    await settle()
    assert batcher.busy == 2 and batcher.queued == 3
    await batcher.stop()
    assert all(isinstance(f.exception(), Unavailable) for f in futures)
    assert batcher.busy == 0


async def test_no_waiter_left_unresolved_with_several_runners_under_mixed_load() -> None:
    batcher, runners, _ = make(3, max_queue_items=1000, max_batch_size=5)
    runners[2].broken = True
    loop = asyncio.get_running_loop()
    futures = []
    for i in range(300):
        deadline = loop.time() + (0.0005 if i % 11 == 0 else 60)
        futures += batcher.submit([(f"x{i}", i % 7 + 1)], deadline)
        if i % 4 == 0:
            await asyncio.sleep(0)
    for i, future in enumerate(futures):
        if i % 17 == 0:
            future.cancel()
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)
    assert len(results) == 300 and all(f.done() for f in futures)
    assert any(r == f"x{i}" * 2 for i, r in enumerate(results))
    assert batcher.busy == 0 and batcher.queued == 0
    await batcher.stop()


def test_a_batcher_needs_a_runner() -> None:
    with pytest.raises(ValueError, match="at least one runner"):
        Batcher([], max_batch_size=2, max_batch_tokens=10, max_queue_items=4)


async def test_a_batch_whose_run_is_cancelled_is_answered_whatever_ends_first() -> None:
    """Stop cancels the loop and every running batch; a batch's own task answers its items,
    so nothing depends on which task sees the cancellation first."""
    batcher, runners, _ = make(2)
    runners[0].gate.clear()
    futures = batcher.submit([("a", 1), ("b", 1)], far())
    await settle()
    (execution,) = batcher._executions
    execution.cancel()  # before the loop: the loop's own clean-up no longer holds this batch
    await settle()
    assert all(isinstance(f.exception(), Unavailable) for f in futures)
    assert batcher.busy == 0
    runners[0].gate.set()
    later = batcher.submit([("c", 1)], far())
    assert await asyncio.wait_for(asyncio.gather(*later), 5) == ["cc"]
    await batcher.stop()


async def test_beside_live_traffic_bulk_alone_leaves_a_runner_free() -> None:
    """Two runners: while live requests came within LIVE_RECENT_S, bulk work alone runs on one
    runner and the other waits free, so the next live request runs at once; once live traffic
    has been quiet that long, bulk work takes both."""
    now = [1000.0]
    batcher, runners, journal = make(2, max_batch_size=2, bulk_beside_live=1)
    batcher._clock = lambda: now[0]  # the batcher's clock, moved by hand
    for runner in runners:
        runner.gate.clear()
    live = batcher.submit([("live", 1)], far())
    await settle()
    bulk = [batcher.submit([(name, 1)], far(), priority="batch")[0] for name in "abcd"]
    await settle()
    assert journal == [(0, ["live"])]  # runner 1 stays free: bulk alone may not take it
    late = batcher.submit([("late", 1)], far())
    await settle()
    assert journal[-1] == (1, ["late", "a"])  # at once, on the free runner, with one bulk item
    now[0] += 2.0  # no live request since
    runners[0].gate.set()
    runners[1].gate.set()
    await asyncio.gather(*live, *late, *bulk)
    assert [batch for _, batch in journal[2:]] == [["b", "c"], ["d"]]  # full batches, live traffic gone
    await batcher.stop()


async def test_a_live_batch_carries_no_bulk_item_while_bulk_runs_on_another_runner() -> None:
    """Bulk work already runs on runner 0: the live batch on runner 1 takes no batch item
    (each would lengthen its run), and `beside_bulk` says so of that runner alone."""
    batcher, runners, journal = make(2, max_batch_size=4, bulk_beside_live=1)
    for runner in runners:
        runner.gate.clear()
    first = [batcher.submit([(name, 1)], far(), priority="batch")[0] for name in "abcd"]
    await settle()
    assert journal == [(0, ["a", "b", "c", "d"])]  # no live traffic yet: bulk takes a runner
    assert not batcher.beside_bulk(0) and not batcher.beside_bulk(1)
    more = [batcher.submit([(name, 1)], far(), priority="batch")[0] for name in "efg"]
    live = batcher.submit([("x", 1)], far())
    await settle()
    assert journal[-1] == (1, ["x"])
    assert batcher.beside_bulk(1) and not batcher.beside_bulk(0)
    runners[1].gate.set()
    await asyncio.gather(*live)
    runners[0].gate.set()
    await asyncio.gather(*first, *more)
    assert not batcher.beside_bulk(0) and not batcher.beside_bulk(1)
    await batcher.stop()


async def test_a_live_item_runs_now_beside_bulk_work_alone_but_not_beside_live_work() -> None:
    """`run_now` takes a live item at once while only bulk batches run and no live item waits;
    not while a live batch runs or a live item is queued (those it would overtake)."""
    batcher, runners, journal = make(2, max_batch_size=4, bulk_beside_live=1)
    for runner in runners:
        runner.gate.clear()
    bulk = [batcher.submit([(name, 1)], far(), priority="batch")[0] for name in "ab"]
    await settle()
    assert journal == [(0, ["a", "b"])] and batcher.bulk_only()
    assert batcher.run_now("x", 1, far(), None, lambda rows: [r * 3 for r in rows]) == "xxx"
    live = batcher.submit([("y", 1)], far())
    await settle()
    assert journal[-1] == (1, ["y"]) and not batcher.bulk_only()  # a live batch runs
    assert batcher.run_now("z", 1, far(), None, lambda rows: [r * 3 for r in rows]) is None
    runners[1].gate.set()
    await asyncio.gather(*live)
    runners[1].gate.clear()
    queued = batcher.submit([("w", 1)], far())  # runner 1 is free: it runs w at once
    await settle()
    waiting = batcher.submit([("v", 1)], far())  # no runner free: v waits, live, in the queue
    assert not batcher.bulk_only()
    assert batcher.run_now("u", 1, far(), None, lambda rows: [r * 3 for r in rows]) is None
    for runner in runners:
        runner.gate.set()
    await asyncio.gather(*bulk, *queued, *waiting)
    await batcher.stop()
