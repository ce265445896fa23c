"""The per-model batch loop.

Requests tokenized elsewhere are queued as items with a future and a deadline. Whenever a
runner is free the loop forms a batch (see `select_batch`) and hands it to that runner, which
does the work off the event loop, so new requests keep arriving and queueing meanwhile. A
model served by several sessions (instances) has one runner each: the next batch goes to
whichever is free, the lowest-numbered first, as Triton's instance groups do.

Each item has a priority level: interactive items go first, batch items fill the room left
in a batch and age into interactive ones, and each level has its room in the queue (see
service/batching/queues.py). Deadlines, cancellation and stops hold the same for both.

Invariant: every future handed out by `submit` is resolved, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from service.batching.policy import WINDOW_BATCHES, Item, Ticket, select_batch
from service.batching.queues import LevelQueues
from service.errors import DEADLINE_PASSED, DeadlineExceeded, InferenceFailed, Overloaded, ServiceError, Unavailable
from service.priorities import BATCH, INTERACTIVE, LEVELS, Priority

P = TypeVar("P")
R = TypeVar("R")
Runner = Callable[[list[P]], Awaitable[Sequence[R]]]

log = logging.getLogger("bertserve.batcher")

# A full queue is swept for cancelled and expired items before a request is refused (they
# hold room until they reach the selection window otherwise), at most this often: a sweep
# walks the whole queue, and under a storm refusals come by the thousand per second.
SWEEP_INTERVAL_S = 0.05

# The defaults of the per-level settings (service/settings.py says why these figures).
AGING_S = 5.0
BATCH_SHARE = 0.5
# While interactive requests came within LIVE_RECENT_S ("beside live traffic"), a live request
# should neither wait for a bulk batch nor ride in a long one: bulk work alone leaves one runner
# (session) free for live requests, where a model has two or more, and a batch led by live
# items carries at most `bulk_beside_live` young batch items (service/batching/sizing.py sets
# it per provider; with one runner, bulk batches are held to it too). Aged batch items ride as
# interactive ones. Without live traffic, bulk work runs full batches on every runner.
# A batch led by live items carries no young batch item at all while bulk work already runs on
# another runner: there bulk moves anyway, and on a CPU each rider lengthens the live batch
# (on 2 cores one rider made a live request's run 1.8 x as long).
LIVE_RECENT_S = 1.0


class BatchObserver(Protocol):
    """What the batcher reports, per priority level where it has one. `levels`: each item's
    level, beside its queue wait."""

    def queue_depth(self, items: int, priority: Priority = INTERACTIVE) -> None: ...
    def rejected(self, reason: str, items: int, priority: Priority = INTERACTIVE) -> None: ...
    def batch(
        self, items: int, padded_tokens: int, queue_waits: list[float], seconds: float, levels: Sequence[Priority] = ()
    ) -> None: ...
    def failed(self, items: int) -> None: ...


class NullObserver:
    def queue_depth(self, items: int, priority: Priority = INTERACTIVE) -> None:
        pass

    def rejected(self, reason: str, items: int, priority: Priority = INTERACTIVE) -> None:
        pass

    def batch(
        self, items: int, padded_tokens: int, queue_waits: list[float], seconds: float, levels: Sequence[Priority] = ()
    ) -> None:
        pass

    def failed(self, items: int) -> None:
        pass


class Batcher(Generic[P, R]):
    def __init__(
        self,
        runners: Runner[P, R] | Sequence[Runner[P, R]],
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        max_queue_items: int,
        max_wait_s: float = 0.0,
        min_fill: float = 0.0,
        observer: BatchObserver | None = None,
        name: str = "model",
        window: int | None = None,
        aging_s: float = AGING_S,
        batch_share: float = BATCH_SHARE,
        bulk_beside_live: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`aging_s`: a batch item older than this is served as interactive. `batch_share`:
        the share of `max_queue_items` that batch items may hold. `bulk_beside_live`: while
        interactive items came within LIVE_RECENT_S, how many young batch items a batch led by
        interactive ones may hold, and with a single runner a batch of bulk alone (None: no
        bound). `clock`: when items were queued, for their queue wait and their age
        (perf_counter: uvloop's clock counts whole milliseconds, and a queue wait is often
        less than one)."""
        self._runners: list[Runner[P, R]] = [runners] if callable(runners) else list(runners)
        if not self._runners:
            raise ValueError("a batcher needs at least one runner")
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_items = max_queue_items
        self.max_wait_s = max_wait_s
        self.min_fill = min_fill
        # Batches are picked among the oldest `window` items only (see select_batch).
        self.window = window if window is not None else WINDOW_BATCHES * max_batch_size
        self.aging_s = aging_s
        # At least one item, so a batch request always fits an empty queue.
        self.batch_room = max(1, int(max_queue_items * batch_share))
        self._clock = clock
        self._observer = observer or NullObserver()
        self._name = name
        self._pending: LevelQueues[P] = LevelQueues()
        self._swept_at = float("-inf")
        self._running: dict[int, list[Item[P]]] = {}  # runner -> its batch; resolved on stop too
        self._bulk_running: set[int] = set()  # the runners whose batch is batch-priority items alone
        self._started: dict[int, float] = {}  # runner -> monotonic start of its batch, for stall checks
        self._executions: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batches_run = 0  # a batch's number, so a ticket counts each batch once
        self.bulk_beside_live = max_batch_size if bulk_beside_live is None else max(1, bulk_beside_live)
        self._live_at = float("-inf")  # self._clock() when an interactive item last came

    @property
    def queued(self) -> int:
        return len(self._pending)

    def queued_at(self, priority: Priority) -> int:
        return self._pending.count(priority)

    def capacity(self, priority: Priority = INTERACTIVE) -> int:
        """The most items of a level the queue ever holds: a request of more never fits."""
        return self.max_queue_items if priority == INTERACTIVE else self.batch_room

    def room(self, priority: Priority = INTERACTIVE) -> int:
        """Items of a level the queue takes now."""
        room = self.max_queue_items - len(self._pending)
        if priority == BATCH:
            room = min(room, self.batch_room - self._pending.count(BATCH))
        return max(0, room)

    @property
    def runners(self) -> int:
        return len(self._runners)

    @property
    def busy(self) -> int:
        """Runners with a batch now."""
        return len(self._running)

    def bulk_only(self) -> bool:
        """Batches run, each of bulk work alone, and no interactive item waits: a live item
        run now would wait for nothing but cores."""
        return (
            bool(self._running)
            and len(self._bulk_running) == len(self._running)
            and not self._pending.count(INTERACTIVE)
        )

    def beside_bulk(self, runner: int) -> bool:
        """Whether the batch on `runner` holds a live (interactive) item while another runner
        runs bulk work alone: its runner may then give it more of the machine (the model's
        choice: service/engine/model.py)."""
        return runner in self._running and runner not in self._bulk_running and bool(self._bulk_running)

    def running_since(self) -> dict[int, float]:
        """Runner -> monotonic start of its batch, for the runners busy now (stalls are per runner)."""
        return dict(self._started)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self._name}")

    async def stop(self) -> None:
        """Stop the loop and the batches it handed out; whatever is queued or running is answered 503."""
        tasks = [t for t in (self._task, *self._executions) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._fail_all(Unavailable("the service is shutting down"))

    def check_room(self, items: int, priority: Priority = INTERACTIVE) -> None:
        """429 now if `items` of the level would not fit in the queue; `submit` checks again
        atomically. Batch items meet their level's room first, while interactive ones still
        fit."""
        if self._task is None:
            raise Unavailable("the model is not serving")
        if self.room(priority) < items and not self._room_after_sweep(items, priority):
            self._observer.rejected("overloaded", items, priority)
            if priority == BATCH and len(self._pending) + items <= self.max_queue_items:
                raise Overloaded(
                    f"batch-priority room full at {self.batch_room} items (BERTSERVE_BATCH_QUEUE_SHARE of "
                    "BERTSERVE_MAX_QUEUE_ITEMS): retry later"
                )
            raise Overloaded(f"queue full at {self.max_queue_items} items (BERTSERVE_MAX_QUEUE_ITEMS): retry later")

    def full(self, priority: Priority = INTERACTIVE) -> bool:
        """No request of the level, however small, would fit now (after a sweep of dead items)."""
        return self.room(priority) < 1 and not self._room_after_sweep(1, priority)

    def count_refusal(self, priority: Priority = INTERACTIVE) -> None:
        """A request refused before its size was known (the fast 429): counted as one item."""
        self._observer.rejected("overloaded", 1, priority)

    def submit(
        self,
        payloads: Sequence[tuple[P, int]],
        deadline: float,
        ticket: Ticket | None = None,
        priority: Priority = INTERACTIVE,
    ) -> list[asyncio.Future[R]]:
        """Queue (payload, tokens) pairs as one request at a priority level: all of them or
        none (429). The ticket, if any, hears of the queue wait and the batches its items
        ride in."""
        self.check_room(len(payloads), priority)
        loop = asyncio.get_running_loop()
        now = self._clock()
        if priority == INTERACTIVE:
            self._live_at = now
        futures: list[asyncio.Future[R]] = []
        for payload, tokens in payloads:
            future: asyncio.Future[R] = loop.create_future()
            self._pending.append(Item(payload, tokens, deadline, now, future, ticket, priority))
            futures.append(future)
        self._observer.queue_depth(self._pending.count(priority), priority)
        self._wakeup.set()
        _mark_queued(ticket, now)
        return futures

    def run_now(
        self, payload: P, tokens: int, deadline: float, ticket: Ticket | None, run: Callable[[list[P]], Sequence[R]]
    ) -> R | None:
        """Run one item at once with `run`, on the calling (event loop's) thread, when no item
        is queued and no batch runs, or only bulk work does (`bulk_only`): the bookkeeping of
        a batch of one without the trip through the queue, the loop task and back
        (docs/design.md, "Inline runs on the event loop"). None when that does not hold, or
        when the run fails: the caller then queues the item, so a failure is retried and
        reported as any batch's is."""
        if self._task is None or ((self._pending or self._running) and not self.bulk_only()):
            return None
        if deadline <= asyncio.get_running_loop().time():
            return None  # the queue answers it with its 504
        started = self._live_at = self._clock()
        try:
            (result,) = run([payload])
        except Exception:  # queued by the caller: retried and logged there
            return None
        # Never queued: counted as queued at its start. Only ever interactive (the caller's
        # choice: a batch item has nothing to gain from skipping a queue that is empty).
        _mark_queued(ticket, started)
        self._count_batch([ticket], [0.0], tokens, self._clock() - started, started, [INTERACTIVE])
        return result

    async def _loop(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while len(self._running) < len(self._runners) and self._drop_dead_head():
                    if await self._should_wait():
                        continue
                    if self._keep_runner_for_live(self._clock()):
                        break  # the running batches' end wakes the loop again
                    batch = self._take_batch()
                    if not batch:
                        continue
                    # The lowest-numbered free runner: the same session first, while one is enough.
                    runner = next(i for i in range(len(self._runners)) if i not in self._running)
                    self._running[runner] = batch
                    if all(item.priority == BATCH for item in batch):
                        self._bulk_running.add(runner)
                    task = asyncio.get_running_loop().create_task(self._run_on(runner, batch))
                    self._executions.add(task)
                    task.add_done_callback(self._executions.discard)
        finally:
            self._fail_all(Unavailable("the batch loop stopped"))

    async def _run_on(self, runner: int, batch: list[Item[P]]) -> None:
        try:
            await self._execute(runner, batch)
        except asyncio.CancelledError:
            # Stopped mid-run: answered here, whichever of the stopped tasks ends first.
            for item in batch:
                _resolve_error(item, Unavailable("the service is shutting down"))
            raise
        finally:
            del self._running[runner]
            self._bulk_running.discard(runner)
            self._wakeup.set()  # the loop may have items waiting for a free runner

    async def _should_wait(self) -> bool:
        """With max_wait > 0 and a batch not yet full, wait for more items, up to the oldest
        item's age limit. Returns True when it waited (the queue may have changed)."""
        oldest = self._pending.oldest()
        if self.max_wait_s <= 0 or oldest is None or len(self._pending) >= self.max_batch_size:
            return False
        remaining = oldest.enqueued + self.max_wait_s - self._clock()
        if remaining <= 0:
            return False
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), remaining)
        return True

    def _live_recently(self, clock: float) -> bool:
        return clock - self._live_at < LIVE_RECENT_S

    def _bulk_alone(self, clock: float) -> bool:
        """Only young batch items are queued: the next batch would be bulk work alone."""
        if self._pending.count(INTERACTIVE):
            return False
        head = self._pending.head(BATCH)
        return head is not None and head.enqueued > clock - self.aging_s

    def _keep_runner_for_live(self, clock: float) -> bool:
        """Beside live traffic, bulk work alone does not take the last free runner."""
        return (
            len(self._runners) > 1
            and len(self._running) + 1 >= len(self._runners)
            and self._live_recently(clock)
            and self._bulk_alone(clock)
        )

    def _take_batch(self) -> list[Item[P]]:
        """Take the next batch off the queue (service/batching/queues.py says which items);
        dead items met on the way are dropped."""
        now = asyncio.get_running_loop().time()
        clock = self._clock()
        before = {level: self._pending.count(level) for level in LEVELS}
        # Beside live traffic, young batch items fill at most bulk_beside_live places in a
        # batch led by live items (none while bulk runs on another runner), and in one of bulk
        # alone where no runner is kept free (a single runner); aged ones ride as interactive.
        max_fill: int | None = None
        if self._live_recently(clock):
            if not self._bulk_alone(clock):
                max_fill = 0 if self._bulk_running else self.bulk_beside_live
            elif len(self._runners) == 1:
                max_fill = self.bulk_beside_live - 1  # its oldest item rides besides
        batch = self._pending.take(
            self.window,
            now,
            clock - self.aging_s,
            lambda item: self._alive(item, now),
            lambda urgent, fill: select_batch(
                urgent, self.max_batch_size, self.max_batch_tokens, self.min_fill, self.window, fill, max_fill
            ),
        )
        self._report_depth(level for level in LEVELS if self._pending.count(level) != before[level])
        return batch

    def _drop_dead_head(self) -> bool:
        """Drop expired and cancelled items at the head of each level, so the oldest is a
        live one; True if any item remains. Dead items further back go when they reach the
        window."""
        if self._pending:
            now = asyncio.get_running_loop().time()
            self._report_depth(self._pending.drop_dead_heads(lambda item: self._alive(item, now)))
        return bool(self._pending)

    def _room_after_sweep(self, items: int, priority: Priority) -> bool:
        """Before refusing: drop every dead item in the queue (at most once per sweep
        interval) and say whether `items` of the level now fit."""
        now = asyncio.get_running_loop().time()
        if now - self._swept_at < SWEEP_INTERVAL_S:
            return False
        self._swept_at = now
        self._report_depth(self._pending.keep(lambda item: self._alive(item, now)))
        return self.room(priority) >= items

    def _report_depth(self, levels: Iterable[Priority]) -> None:
        for level in levels:
            self._observer.queue_depth(self._pending.count(level), level)

    def _alive(self, item: Item[P], now: float) -> bool:
        """False for an item not worth running, which is then resolved (if it was not) and counted."""
        if item.deadline <= now:
            self._observer.rejected("timeout", 1, item.priority)
            _resolve_error(item, DeadlineExceeded(DEADLINE_PASSED + " before it ran"))
            return False
        if item.future.done():
            self._observer.rejected("cancelled", 1, item.priority)
            return False
        return True

    async def _execute(self, runner: int, batch: list[Item[P]]) -> None:
        """Run one batch on a runner and resolve its futures. If it raises, each item is run
        alone on the same runner, so one poison input fails alone and the others still get
        their answers."""
        started = self._clock()
        waits = [started - it.enqueued for it in batch]
        self._started[runner] = time.monotonic()
        try:
            results = await self._runners[runner]([it.payload for it in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"runner returned {len(results)} results for {len(batch)} items")
        except Exception:
            log.exception("batch of %d failed on %s", len(batch), self._name)
            self._observer.failed(len(batch))
            if len(batch) == 1:
                _resolve_error(batch[0], InferenceFailed("inference failed for this input"))
                return
            for item in batch:
                if not item.future.done():
                    await self._execute(runner, [item])
            return
        finally:
            self._started.pop(runner, None)
        padded = len(batch) * max(it.tokens for it in batch)
        levels = [it.priority for it in batch]
        self._count_batch([it.ticket for it in batch], waits, padded, self._clock() - started, started, levels)
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    def _count_batch(
        self,
        tickets: list[Ticket | None],
        waits: list[float],
        padded: int,
        seconds: float,
        started: float,
        levels: list[Priority],
    ) -> None:
        """A batch that ran: to the observer, and to the ticket of each of its items."""
        self._batches_run += 1
        self._observer.batch(len(tickets), padded, waits, seconds, levels)
        for ticket, waited in zip(tickets, waits, strict=True):
            if ticket is not None:
                ticket.rode(waited, self._batches_run, len(tickets), seconds, started)

    def _fail_all(self, error: ServiceError) -> None:
        for item in [*(it for batch in self._running.values() for it in batch), *self._pending]:
            _resolve_error(item, error)
        self._pending.clear()
        self._report_depth(LEVELS)


def _mark_queued(ticket: Ticket | None, at: float) -> None:
    if ticket is not None:
        ticket.queued_at = at


def _resolve_error(item: Item[P], error: Exception) -> None:
    if not item.future.done():
        item.future.set_exception(error)
        # Mark retrieved: a waiter that already gave up must not log "never retrieved".
        item.future.exception()
