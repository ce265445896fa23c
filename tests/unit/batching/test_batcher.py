"""The batcher with a fake runner: no HTTP, no onnxruntime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest

from service.batching import Batcher
from service.batching.policy import WINDOW_BATCHES
from service.errors import DeadlineExceeded, InferenceFailed, Overloaded, Unavailable
from service.priorities import Priority
from tests.sync import until_async


class Recorder:
    """Counts what the batcher reports, like the metrics would."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.failures: list[int] = []
        self.rejections: dict[str, int] = {}
        self.by_level: dict[tuple[str, Priority], int] = {}  # (reason, level) -> items
        self.depths: dict[Priority, int] = {}
        self.waits: list[tuple[Priority, float]] = []

    @property
    def depth(self) -> int:
        return sum(self.depths.values())

    def queue_depth(self, items: int, priority: Priority = "interactive") -> None:
        self.depths[priority] = items

    def rejected(self, reason: str, items: int, priority: Priority = "interactive") -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + items
        self.by_level[reason, priority] = self.by_level.get((reason, priority), 0) + items

    def batch(
        self, items: int, padded_tokens: int, queue_waits: list[float], seconds: float, levels: Sequence[Priority] = ()
    ) -> None:
        self.batches.append(items)
        self.waits += zip(levels, queue_waits, strict=True)

    def failed(self, items: int) -> None:
        self.failures.append(items)


class FakeRunner:
    """Doubles each payload; blocks on a gate when asked; fails on 'poison'."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, payloads: list[str]) -> Sequence[str]:
        self.calls.append(list(payloads))
        if self.gate is not None:
            await self.gate.wait()
        if "poison" in payloads:
            raise ValueError("bad input")
        return [p * 2 for p in payloads]


def make(runner: FakeRunner, **kw: float) -> tuple[Batcher[str, str], Recorder]:
    rec = Recorder()
    opts = {"max_batch_size": 4, "max_batch_tokens": 1000, "max_queue_items": 8, **kw}
    batcher: Batcher[str, str] = Batcher(runner, observer=rec, **opts)  # type: ignore[arg-type]
    batcher.start()
    return batcher, rec


def far() -> float:
    return asyncio.get_running_loop().time() + 60


async def test_single_request_runs_at_once() -> None:
    runner = FakeRunner()
    batcher, rec = make(runner)
    (fut,) = batcher.submit([("a", 1)], far())
    assert await asyncio.wait_for(fut, 1) == "aa"
    assert rec.batches == [1]
    await batcher.stop()


async def test_requests_queued_while_busy_share_the_next_batch() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, rec = make(runner)
    first = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)  # the loop takes 'a' and blocks in the runner
    others = [batcher.submit([(p, 1)], far())[0] for p in "bcde"]
    runner.gate.set()
    assert await asyncio.gather(*first, *others) == ["aa", "bb", "cc", "dd", "ee"]
    assert runner.calls == [["a"], ["b", "c", "d", "e"]]
    assert rec.batches == [1, 4]
    await batcher.stop()


async def test_full_queue_refuses_whole_request_with_429() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, rec = make(runner, max_queue_items=3)
    running = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)
    queued = batcher.submit([("b", 1), ("c", 1)], far())
    with pytest.raises(Overloaded, match=r"queue full at 3 items \(BERTSERVE_MAX_QUEUE_ITEMS\)"):
        batcher.submit([("d", 1), ("e", 1)], far())  # 2 + 2 > 3: all or nothing
    assert batcher.queued == 2
    assert rec.rejections == {"overloaded": 2}
    runner.gate.set()
    assert await asyncio.gather(*running, *queued) == ["aa", "bb", "cc"]
    await batcher.stop()


async def test_expired_items_are_dropped_before_running() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, rec = make(runner)
    loop = asyncio.get_running_loop()
    busy = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)
    deadline = loop.time() + 0.01
    (late,) = batcher.submit([("late", 1)], deadline)
    await until_async(lambda: loop.time() > deadline)  # expired while the runner is held
    runner.gate.set()
    with pytest.raises(DeadlineExceeded):
        await late
    await asyncio.gather(*busy)
    assert ["late"] not in runner.calls
    assert all("late" not in call for call in runner.calls)
    assert rec.rejections == {"timeout": 1}
    await batcher.stop()


async def test_cancelled_items_are_dropped_and_counted() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, rec = make(runner)
    busy = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)
    (gone,) = batcher.submit([("gone", 1)], far())
    (kept,) = batcher.submit([("kept", 1)], far())
    gone.cancel()
    runner.gate.set()
    assert await kept == "keptkept"
    await asyncio.gather(*busy)
    assert all("gone" not in call for call in runner.calls)
    assert rec.rejections == {"cancelled": 1}
    await batcher.stop()


async def test_failed_batch_is_retried_item_by_item_so_only_the_poison_fails() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, rec = make(runner)
    busy = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)
    futs = batcher.submit([("b", 1), ("poison", 1), ("c", 1)], far())
    runner.gate.set()
    await asyncio.gather(*busy)
    results = await asyncio.gather(*futs, return_exceptions=True)
    assert results[0] == "bb" and results[2] == "cc"
    assert isinstance(results[1], InferenceFailed)
    assert runner.calls[1] == ["b", "poison", "c"]
    assert runner.calls[2:] == [["b"], ["poison"], ["c"]]
    assert rec.failures == [3, 1]
    await batcher.stop()


async def _settle() -> None:
    """Let the batch loop take every step it can take without the clock moving."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_max_wait_holds_a_small_batch_for_company() -> None:
    runner = FakeRunner()
    batcher, rec = make(runner, max_wait_s=60, max_batch_size=2)
    (a,) = batcher.submit([("a", 1)], far())
    await _settle()
    assert runner.calls == [] and batcher.queued == 1  # waiting for company, not run alone
    (b,) = batcher.submit([("b", 1)], far())  # a full batch: the wait ends
    assert await asyncio.gather(a, b) == ["aa", "bb"]
    assert rec.batches == [2]
    await batcher.stop()


async def test_max_wait_ends_at_the_oldest_items_age_limit() -> None:
    from service.batching import Ticket

    runner = FakeRunner()
    batcher, rec = make(runner, max_wait_s=0.01)
    ticket = Ticket()
    (a,) = batcher.submit([("a", 1)], far(), ticket)
    assert await a == "aa"
    assert rec.batches == [1]
    assert ticket.queue_s >= 0.01  # it did wait, the whole limit
    await batcher.stop()


async def test_stop_resolves_every_waiter() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, _ = make(runner)
    running = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)
    queued = batcher.submit([("b", 1), ("c", 1)], far())
    await batcher.stop()
    for fut in [*running, *queued]:
        assert fut.done()
    assert all(isinstance(f.exception(), Unavailable) for f in queued)
    with pytest.raises(Unavailable):
        batcher.submit([("d", 1)], far())


async def test_no_waiter_left_unresolved_under_mixed_load() -> None:
    runner = FakeRunner()
    batcher, _ = make(runner, max_queue_items=1000, max_batch_size=7)
    loop = asyncio.get_running_loop()
    futs = []
    for i in range(200):
        payload = "poison" if i % 37 == 0 else f"x{i}"
        deadline = loop.time() + (0.0005 if i % 11 == 0 else 60)
        futs += batcher.submit([(payload, i % 13 + 1)], deadline)
        if i % 5 == 0:
            await asyncio.sleep(0)
    for i, f in enumerate(futs):
        if i % 17 == 0:
            f.cancel()
    results = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 5)
    assert len(results) == 200
    assert all(f.done() for f in futs)
    ok = [r for r in results if isinstance(r, str)]
    assert ok and all(r.startswith("x") and r.count("x") == 2 for r in ok)
    await batcher.stop()


async def test_a_batch_is_picked_from_the_window_of_oldest_items_only() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, _ = make(runner, max_batch_size=3, window=3)
    busy = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)
    # e and f match b's length exactly, but they are not among the 3 oldest.
    futs = batcher.submit([("b", 20), ("c", 50), ("d", 50), ("e", 20), ("f", 20)], far())
    runner.gate.set()
    await asyncio.gather(*busy, *futs)
    assert runner.calls[1:] == [["b", "c", "d"], ["e", "f"]]
    await batcher.stop()


async def test_items_left_behind_keep_their_place_in_the_queue() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, _ = make(runner, max_batch_size=3, max_queue_items=16)
    busy = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)
    futs = batcher.submit([("b", 10), ("c", 90), ("d", 10), ("e", 90), ("f", 10), ("g", 50)], far())
    runner.gate.set()
    await asyncio.gather(*busy, *futs)
    assert runner.calls[1:] == [["b", "d", "f"], ["c", "e", "g"]]
    await batcher.stop()


async def test_the_default_window_is_bounded_by_the_batch_size() -> None:
    batcher, _ = make(FakeRunner(), max_batch_size=4, max_queue_items=100_000)
    assert batcher.window == 4 * WINDOW_BATCHES
    await batcher.stop()


async def test_dead_items_behind_the_window_do_not_hold_room() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, rec = make(runner, max_queue_items=4, window=1)
    busy = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)
    kept = batcher.submit([("b", 1), ("c", 1)], far())
    gone = batcher.submit([("d", 1), ("e", 1)], far())
    for fut in gone:
        fut.cancel()
    (f,) = batcher.submit([("f", 1)], far())  # room once the cancelled d and e are swept
    assert batcher.queued == 3
    assert rec.rejections == {"cancelled": 2}
    runner.gate.set()
    assert await asyncio.gather(*busy, *kept, f) == ["aa", "bb", "cc", "ff"]
    assert all(c not in call for call in runner.calls for c in "de")
    await batcher.stop()


def _batches_of_two() -> Batcher[int, int]:
    """A started batcher of at most two items per batch, each batch taking 10 ms."""

    async def runner(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return items

    batcher: Batcher[int, int] = Batcher(runner, max_batch_size=2, max_batch_tokens=100, max_queue_items=10)
    batcher.start()
    return batcher


async def test_ticket_hears_of_the_batches_its_items_rode_in() -> None:
    from service.batching import Ticket

    batcher = _batches_of_two()
    ticket = Ticket()
    futures = batcher.submit([(1, 1), (2, 1), (3, 1)], asyncio.get_running_loop().time() + 5, ticket)
    assert await asyncio.gather(*futures) == [1, 2, 3]
    await batcher.stop()
    assert sorted(ticket.batch_sizes) == [1, 2]  # three items, batches of at most two
    first, second = ticket.runs
    assert ticket.inference_s == pytest.approx(first.seconds + second.seconds)
    assert ticket.queue_s >= first.seconds > 0  # the third waited for the first batch


async def test_ticket_keeps_when_its_items_were_queued_and_each_batch_ran() -> None:
    """What the trace's queue and inference spans are drawn from, after the fact."""
    import time

    from service.batching import Ticket

    batcher = _batches_of_two()
    ticket = Ticket()
    before = time.perf_counter()
    futures = batcher.submit([(1, 1), (2, 1), (3, 1)], asyncio.get_running_loop().time() + 5, ticket)
    assert ticket.queued_at is not None and ticket.queued_at >= before
    await asyncio.gather(*futures)
    await batcher.stop()
    first, second = ticket.runs
    assert (first.items, second.items) == (2, 1)
    assert ticket.queued_at <= first.started and first.started + first.seconds <= second.started
    assert ticket.inference_s == pytest.approx(first.seconds + second.seconds)


def test_ticket_inference_is_the_union_of_its_batches_run_intervals() -> None:
    """Batches that ran side by side count once: the request's inference time is the span
    during which any of its batches ran, never more than the request took."""
    from service.batching import Ticket

    ticket = Ticket()
    ticket.rode(0.0, 1, 2, 0.4, 10.0)  # 10.0-10.4
    ticket.rode(0.0, 2, 2, 0.3, 10.1)  # 10.1-10.4, beside the first
    ticket.rode(0.1, 2, 2, 0.3, 10.1)  # the same batch heard of again (another item)
    ticket.rode(0.0, 3, 1, 0.2, 11.0)  # 11.0-11.2, after a gap
    ticket.rode(0.0, 4, 1, 0.1, 10.35)  # 10.35-10.45, reaching past the first two
    assert ticket.inference_s == pytest.approx(0.45 + 0.2)
    assert sum(run.seconds for run in ticket.runs) == pytest.approx(1.0)  # what a sum would say
    assert ticket.batch_sizes == [2, 2, 1, 1] and ticket.queue_s == 0.1
    assert Ticket().inference_s == 0.0


async def test_ticket_of_batches_run_side_by_side_counts_their_overlap_once() -> None:
    """Two runners (sessions) run a request's two batches at the same time."""
    from service.batching import Ticket

    gates = [asyncio.Event(), asyncio.Event()]
    running: list[int] = []

    def runner(index: int) -> Callable[[list[int]], Awaitable[list[int]]]:
        async def run(items: list[int]) -> list[int]:
            running.append(index)
            await gates[index].wait()
            return items

        return run

    batcher: Batcher[int, int] = Batcher(
        [runner(0), runner(1)], max_batch_size=2, max_batch_tokens=100, max_queue_items=10
    )
    batcher.start()
    ticket = Ticket()
    futures = batcher.submit([(1, 1), (2, 1), (3, 1), (4, 1)], far(), ticket)
    await until_async(lambda: sorted(running) == [0, 1])  # both batches run now
    gates[0].set()
    await until_async(lambda: futures[0].done())
    gates[1].set()
    assert await asyncio.gather(*futures) == [1, 2, 3, 4]
    await batcher.stop()
    first, second = sorted(ticket.runs)
    assert second.started < first.started + first.seconds  # they overlapped
    assert ticket.inference_s == pytest.approx(second.started + second.seconds - first.started)
    assert ticket.inference_s < first.seconds + second.seconds


def test_queue_wait_is_finer_than_a_millisecond_on_uvloop() -> None:
    """The server runs on uvloop, whose clock counts whole milliseconds: a queue wait read
    from it came out as 66.000 ms. Measured on perf_counter, some of several waits have a
    fractional millisecond."""
    import uvloop

    from service.batching import Ticket

    async def waits() -> list[float]:
        runner = FakeRunner()
        batcher, _ = make(runner, max_batch_size=1)
        tickets = []
        for _ in range(5):
            runner.gate = asyncio.Event()
            held = batcher.submit([("a", 1)], far())
            await until_async(lambda: batcher.busy == 1)
            ticket = Ticket()
            queued = batcher.submit([("b", 1)], far(), ticket)
            await asyncio.sleep(0.002)  # what the queued item waits for, not a synchronisation
            runner.gate.set()
            await asyncio.gather(*held, *queued)
            tickets.append(ticket)
        await batcher.stop()
        return [t.queue_s for t in tickets]

    measured = uvloop.run(waits())
    assert all(w > 0 for w in measured)
    assert any(f"{w * 1000:.3f}"[-3:] != "000" for w in measured), measured


def _double(payloads: list[str]) -> list[str]:
    return [p * 2 for p in payloads]


async def test_run_now_runs_one_item_at_once_when_nothing_is_queued_or_running() -> None:
    from service.batching import Ticket

    batcher, rec = make(FakeRunner())
    ticket = Ticket()
    assert batcher.run_now("a", 3, far(), ticket, _double) == "aa"
    # Counted as a batch of one that waited for nothing.
    assert rec.batches == [1] and batcher.queued == 0 and batcher.busy == 0
    assert ticket.batch_sizes == [1] and ticket.queue_s == 0.0
    assert ticket.queued_at is not None and ticket.runs[0].started == ticket.queued_at
    await batcher.stop()


async def test_run_now_declines_while_a_batch_runs_or_items_wait() -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    batcher, rec = make(runner)
    ran: list[list[str]] = []

    def record(payloads: list[str]) -> list[str]:
        ran.append(payloads)
        return _double(payloads)

    first = batcher.submit([("a", 1)], far())
    await asyncio.sleep(0)  # 'a' runs, held at the gate
    assert batcher.run_now("b", 1, far(), None, record) is None  # a batch runs
    waiting = batcher.submit([("c", 1)], far())
    assert batcher.run_now("d", 1, far(), None, record) is None  # and an item waits
    runner.gate.set()
    assert await asyncio.gather(*first, *waiting) == ["aa", "cc"]
    assert ran == [] and rec.batches == [1, 1]
    await batcher.stop()
    assert batcher.run_now("e", 1, far(), None, record) is None  # stopped
    assert ran == []


async def test_run_now_leaves_a_failed_or_expired_item_to_the_queue() -> None:
    batcher, rec = make(FakeRunner())

    def fails(payloads: list[str]) -> list[str]:
        raise ValueError("bad input")

    assert batcher.run_now("a", 1, far(), None, fails) is None
    past = asyncio.get_running_loop().time() - 1
    assert batcher.run_now("b", 1, past, None, _double) is None
    # Nothing counted: the caller queues them, and the queue reports what happens there.
    assert rec.batches == [] and rec.failures == [] and batcher.queued == 0
    await batcher.stop()
