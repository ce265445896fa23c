"""One served model in this process, the engine seam's LocalModel (service/engine/seam.py):
tokenize (inline when small, else in a pool) -> batcher -> runtime (own thread).

Post-processing is left to the task's serving module, vectorised over the request's rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np

from service.batching import INTERACTIVE, Batcher, Priority, Ticket
from service.batching.sizing import (
    CPU_BATCH_SIZE,
    CPU_BULK_BESIDE_LIVE,
    CPU_MIN_FILL,
    CPU_QUEUE_ITEMS,
    CUDA_BATCH_SIZE,
    CUDA_BULK_BESIDE_LIVE,
    CUDA_QUEUE_ITEMS,
    batch_tokens_for,
    read_config,
)
from service.engine.cache import ResultCache
from service.engine.health import RunHealth
from service.engine.inline import PROBE_TOKENS, fastest_run_s, padded_tokens, tokens_within
from service.engine.seam import BatchLimits
from service.engine.tokenizing import tokenize
from service.errors import DEADLINE_PASSED, DeadlineExceeded, InvalidInput
from service.manifest import Manifest
from service.metrics import Metrics
from service.runtime.loader import LoadedModel
from service.runtime.priority import lower_this_thread
from service.runtime.session import CUDA, OnnxSession
from service.runtime.tokenizer import Encoded, TextEncoder
from service.settings import Settings

_N = TypeVar("_N", int, float)


def _or_provider_default(setting: _N | None, model: LoadedModel, cpu: _N, cuda: _N) -> _N:
    """A batching setting as set, or unset: the default of the provider the model runs on."""
    if setting is not None:
        return setting
    return cuda if model.session.provider == CUDA else cpu


def _batch_tokens(settings: Settings, model: LoadedModel) -> int:
    if settings.max_batch_tokens is not None:
        return settings.max_batch_tokens
    return batch_tokens_for(read_config(model.directory))


class States:
    """A row to answer with its token states, for late chunking: the graph's pooled row first,
    then one row per token of its own (no padding), an array of (1 + tokens, hidden)."""

    __slots__ = ("ids",)

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids


Payload = np.ndarray | States


def _ids(row: Payload) -> np.ndarray:
    return row.ids if isinstance(row, States) else row


class LocalModel:
    def __init__(
        self,
        model: LoadedModel,
        settings: Settings,
        metrics: Metrics,
        tokenize_pool: ThreadPoolExecutor,
        cache: ResultCache | None = None,
        quiet: Callable[[], bool] = lambda: True,
        alone: Callable[[], bool] = lambda: True,
    ) -> None:
        self.model = model
        self.manifest: Manifest = model.manifest
        self.name = model.name
        # What the cache keys on: a replaced graph or another variant never shares rows.
        self.identity = model.identity
        self.loaded_at = time.time()
        # Requests admitted on this model and not yet answered: a model replaced by a reload
        # is freed only once they are done (service/reload.py).
        self.users = 0
        self._cache = cache
        self._inflight: dict[tuple[str, bytes], asyncio.Future[np.ndarray]] = {}
        self._cache_metrics = metrics.cache_observer(self.name)
        self._settings = settings
        self._tokenize_pool = tokenize_pool
        # One thread per session: onnxruntime parallelises inside a run (intra-op threads);
        # two batches at once on one session would only split its threads. Several instances
        # run side by side, each on its own thread with its share of the cores.
        # Each runs inside onnxruntime as one of its intra-op threads: the same lowered priority.
        self._runtime_pools = [
            ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"ort-{self.name}-{i}",
                initializer=lower_this_thread,
                initargs=(settings.runtime_nice,),
            )
            for i in range(len(model.sessions))
        ]
        self.fast_batches = 0  # batches run by the fast lane (tests and metrics read it)
        self._fast_runs = 0  # fast-lane runs on a runtime thread now
        self._live_now = 0  # live single inputs in run_now, taking their turn of the loop
        self.inline_batches = 0  # those of them run on the event loop's thread
        # Padded tokens up to which a fast-lane batch runs on the event loop's thread, set by
        # warm_up from timed runs (service/engine/inline.py); 0 until then, or when off.
        self.inline_max_tokens = 0
        self._quiet = quiet  # whether the whole service is at low load (AppState.quiet)
        self._alone = alone  # and has one client at most (AppState.alone): batches may run on the loop
        self._tokenize_seconds = metrics.tokenize.labels(self.name)
        self.health = RunHealth(self.name)
        self.batcher: Batcher[Payload, np.ndarray] = Batcher(
            [partial(self._run, i) for i in range(len(model.sessions))],
            max_batch_size=_or_provider_default(settings.max_batch_size, model, CPU_BATCH_SIZE, CUDA_BATCH_SIZE),
            max_batch_tokens=_batch_tokens(settings, model),
            max_queue_items=_or_provider_default(settings.max_queue_items, model, CPU_QUEUE_ITEMS, CUDA_QUEUE_ITEMS),
            max_wait_s=settings.max_wait_ms / 1000,
            min_fill=_or_provider_default(settings.min_batch_fill, model, CPU_MIN_FILL, 0.0),
            observer=metrics.observer(self.name),
            name=self.name,
            aging_s=settings.batch_max_wait_s,
            batch_share=settings.batch_queue_share,
            bulk_beside_live=_or_provider_default(None, model, CPU_BULK_BESIDE_LIVE, CUDA_BULK_BESIDE_LIVE),
        )

    async def _run(self, instance: int, rows: list[Payload]) -> Sequence[np.ndarray]:
        try:
            out = await self._run_on(instance, rows)
        except Exception as exc:
            self.health.failed(exc)
            raise
        self.health.ran()
        return out

    async def _run_on(self, instance: int, rows: list[Payload]) -> Sequence[np.ndarray]:
        session = self.model.sessions[instance]
        # The fast lane: at low load (a batch that leaves nothing queued, runs alone, and the
        # service quiet) a spinning session answers sooner (docs/design.md, "The fast lane").
        # Under load the non-spinning sessions keep the cores free for the event loop. It runs
        # on the first instance's thread, so it never runs beside that instance.
        fast = self.model.fast
        if fast is not None and instance == 0 and not self.batcher.queued and self.batcher.busy == 1 and self._quiet():
            session = fast
            self.fast_batches += 1
            if self._fits_inline([_ids(r) for r in rows]):
                # Short enough to run here, on the loop's own thread: no hop to a thread and
                # back (service/engine/inline.py).
                self.inline_batches += 1
                return self._execute(fast, rows)
        elif fast is not None and self._fast_beside_bulk(instance):
            # A live batch beside bulk work, where its own session has a single thread: the
            # fast lane's threads (all the CPUs', spinning during the run) take the cores from
            # the bulk batch for the few milliseconds the live one runs. On 2 cores a live
            # request's run took 3.2 ms on its one thread beside bulk, 1.7 ms idle
            # (docs/design.md, "Bulk work beside live traffic").
            session = fast
            self.fast_batches += 1
        pool = self._runtime_pools[instance]
        if session is not fast:
            return await asyncio.get_running_loop().run_in_executor(pool, self._execute, session, rows)
        self._fast_runs += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, self._execute, session, rows)
        finally:
            self._fast_runs -= 1

    def _fast_beside_bulk(self, instance: int) -> bool:
        return (
            not self._fast_runs  # one run at a time: two would split its threads
            and self.model.sessions[instance].threads == 1
            and self.batcher.beside_bulk(instance)
        )

    def _execute(self, session: OnnxSession, rows: list[Payload]) -> list[np.ndarray]:
        """One batch: the graph's output row per item, or for an item that asks for its token
        states (`States`) its pooled row and its tokens' rows, from the same run."""
        if not any(isinstance(r, States) for r in rows):
            return list(session.run(rows))  # type: ignore[arg-type]
        token_output = self.manifest.token_output
        assert token_output is not None, "the task checks the model has token states"
        pooled, states = session.run_outputs([_ids(r) for r in rows], [session.output, token_output])
        return [
            np.concatenate([pooled[i : i + 1], states[i, : r.ids.shape[-1]]]) if isinstance(r, States) else pooled[i]
            for i, r in enumerate(rows)
        ]

    async def run_now(
        self, ids: Sequence[np.ndarray], deadline: float, ticket: Ticket | None, counted: bool = False
    ) -> list[np.ndarray] | None:
        """A single input that the fast lane would run on the event loop anyway, run at once,
        here, without queueing (Batcher.run_now); None when it must go through `run`. Not with
        the cache: a cached model looks its rows up first. `counted`: the caller counted every
        request that arrived with this one before any of them got here (the engine process
        does, as it reads them), so an idle service needs no turn of the loop to see them."""
        if not self._may_run_now(ids):
            return None
        if not counted or self.batcher.queued or self.batcher.busy:
            # One turn of the loop first: requests that arrived with this one (a burst read in
            # the same pass) enter the app and queue meanwhile, so the service is no longer
            # quiet and they are batched together, instead of running one by one here, each
            # finding the app as quiet as the first did. Beside bulk work the live inputs
            # taking this turn are what keeps them to one at a time (`_live_now`), counted or not.
            self._live_now += 1
            try:
                await asyncio.sleep(0)
                if not self._may_run_now(ids):
                    return None
            finally:
                self._live_now -= 1
        fast = self.model.fast
        assert fast is not None
        row = self.batcher.run_now(ids[0], ids[0].shape[-1], deadline, ticket, lambda rows: self._execute(fast, rows))
        if row is None:
            return None
        self.fast_batches += 1
        self.inline_batches += 1
        return [row]

    def _may_run_now(self, ids: Sequence[np.ndarray]) -> bool:
        # Not with BERTSERVE_MAX_WAIT_MS set: an item is then meant to wait for company.
        if not (self.model.fast is not None and self._cache is None and self.batcher.max_wait_s <= 0 and len(ids) == 1):
            return False
        if not self.batcher.queued and not self.batcher.busy:
            return self._fits_inline(ids)
        # Beside bulk work, where each session has one thread: a lone live input runs here on
        # the fast lane rather than queue for a runner and wait for the loop's turn twice more
        # (to start, and to hear its end) behind the bulk requests' work. Only one at a
        # time: live requests that came together queue and ride together (docs/design.md,
        # "Bulk work beside live traffic").
        return (
            self.batcher.bulk_only()
            and self._live_now <= 1
            and not self._fast_runs
            and self.model.sessions[0].threads == 1
            and padded_tokens(ids) <= self.inline_max_tokens
        )

    def _fits_inline(self, rows: Sequence[np.ndarray]) -> bool:
        """Short enough to run on the event loop, with at most one client to keep waiting."""
        return padded_tokens(rows) <= self.inline_max_tokens and self._alone()

    def warm_up(self) -> None:
        """Run every session once before the model reports ready, so the first user does not
        pay a session's one-time set-up.

        On the CPU one row of the model's max length is enough (the longest input a request
        can bring, so a graph that cannot take it fails here, not on a user): a session's first
        run costs more than its second, but a first run at a new shape, up to the largest
        batch, costs no more than the next run at that shape (the memory arena is off, so
        there is nothing to grow), while warming up the largest batch on every session took
        most of the time to ready (docs/design.md, "Other measured choices"). On CUDA the
        largest batch runs too, once per session: there the device arena grows and kernels
        are picked per shape on first use."""
        token = self.manifest.pad_token_id + 1
        for session in self.model.every_session:
            if session.provider == CUDA:
                size, budget = self.batcher.max_batch_size, self.batcher.max_batch_tokens
                width = min(self.manifest.max_length, max(1, budget // size))
                session.run([np.full(width, token, dtype=np.int64)] * size)
            session.run([np.full(self.manifest.max_length, token, dtype=np.int64)])
        self._time_fast_lane(token)

    def _time_fast_lane(self, token: int) -> None:
        """Set the padded-token limit of a batch run on the event loop from the fast lane's
        time on a short row and on a row of the max length."""
        fast, budget_s = self.model.fast, self._settings.inline_max_ms / 1000
        if fast is None or budget_s <= 0:
            return
        short, long = min(PROBE_TOKENS, self.manifest.max_length), self.manifest.max_length
        short_s = fastest_run_s(lambda: fast.run([np.full(short, token, dtype=np.int64)]))
        long_s = fastest_run_s(lambda: fast.run([np.full(long, token, dtype=np.int64)]))
        self.inline_max_tokens = tokens_within(budget_s, short, short_s, long, long_s)

    async def tokenize(
        self, items: Sequence[str] | Sequence[tuple[str, str]], truncate: bool, max_second_tokens: int | None = None
    ) -> Encoded:
        return await tokenize(
            self.model.encoder, self._tokenize_pool, self._tokenize_seconds, items, truncate, max_second_tokens
        )

    def submit(
        self,
        ids: Sequence[np.ndarray],
        deadline: float,
        ticket: Ticket | None = None,
        priority: Priority = INTERACTIVE,
        states: bool = False,
    ) -> Awaitable[list[np.ndarray]]:
        """Queue the rows now at a priority level, batched with whatever else is queued
        (Overloaded when they do not fit), and give back what waits for them: one row of model
        output per input (a row of a per-token output keeps its batch's padded length); with
        `states`, per input its pooled row and its token states (`States`), never cached."""
        if states:
            items: list[tuple[Payload, int]] = [(States(row), row.shape[-1]) for row in ids]
            return _within(self.batcher.submit(items, deadline, ticket, priority), deadline)
        if self._cache is None:
            rows = [(row, row.shape[-1]) for row in ids]
            return _within(self.batcher.submit(rows, deadline, ticket, priority), deadline)
        return self._cached(self._queue_cached(ids, deadline, ticket, priority), ids, deadline, ticket, priority)

    async def run(
        self,
        ids: Sequence[np.ndarray],
        deadline: float,
        ticket: Ticket | None = None,
        priority: Priority = INTERACTIVE,
        states: bool = False,
    ) -> list[np.ndarray]:
        return await self.submit(ids, deadline, ticket, priority, states)

    def _queue_cached(
        self,
        ids: Sequence[np.ndarray],
        deadline: float,
        ticket: Ticket | None,
        priority: Priority,
        share: bool = True,
    ) -> _Lookup:
        """Hits answered from the cache, never queued; rows identical to one already queued
        wait for it (in-flight deduplication); the rest are queued once each."""
        assert self._cache is not None
        keys = [ResultCache.key(self.identity, row) for row in ids]
        rows: list[np.ndarray | None] = [self._cache.get(key) for key in keys]
        waiting: dict[tuple[str, bytes], asyncio.Future[np.ndarray]] = {}
        fresh: dict[tuple[str, bytes], np.ndarray] = {}
        for key, row, found in zip(keys, ids, rows, strict=True):
            if found is not None or key in waiting or key in fresh:
                continue
            shared = self._inflight.get(key) if share else None
            if shared is not None:
                waiting[key] = shared
            else:
                fresh[key] = row
        self._cache_metrics.counted(hits=sum(r is not None for r in rows), shared=len(waiting), misses=len(fresh))
        own: list[asyncio.Future[np.ndarray]] = []
        if fresh:
            own = self.batcher.submit([(row, row.shape[-1]) for row in fresh.values()], deadline, ticket, priority)
            for key, future in zip(fresh, own, strict=True):
                self._inflight[key] = future
                future.add_done_callback(partial(self._settle, key))
        return _Lookup(keys, rows, [*fresh, *waiting], own, list(waiting.values()))

    async def _cached(
        self, lookup: _Lookup, ids: Sequence[np.ndarray], deadline: float, ticket: Ticket | None, priority: Priority
    ) -> list[np.ndarray]:
        try:
            return await _answer(lookup, deadline)
        except _SharedDropped:
            # The request whose item this one shared left (its client went away) and took the
            # item with it: queue our own this time.
            return await _answer(self._queue_cached(ids, deadline, ticket, priority, share=False), deadline)

    def _settle(self, key: tuple[str, bytes], future: asyncio.Future[np.ndarray]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if self._cache is not None and not future.cancelled() and future.exception() is None:
            self._cache.put(key, future.result())
            self._cache_metrics.size(self._cache.bytes)

    # What the rest of the service may ask of the engine about this model, beside `submit`,
    # `run_now`, `start` and `stop`: its queue's room, its limits, its health. Nothing outside
    # service/engine/ reaches its batcher or sessions (tests/unit/test_layout.py holds it).

    def check_admission(self, items: int, param: str, priority: Priority = INTERACTIVE) -> None:
        """A request of `items` bigger than its level's whole room in the queue can never fit
        (InvalidInput); one that does not fit now is refused at once (Overloaded)."""
        capacity = self.batcher.capacity(priority)
        if items > capacity:
            room = (
                f"whole queue of {capacity} (BERTSERVE_MAX_QUEUE_ITEMS)"
                if priority == INTERACTIVE
                else f"room of {capacity} for batch priority (BERTSERVE_BATCH_QUEUE_SHARE)"
            )
            raise InvalidInput(f"{param} has {items} items, more than the model's {room}: split the request", param)
        self.batcher.check_room(items, priority)

    def room(self, priority: Priority = INTERACTIVE) -> int:
        """Items of a level the queue takes now."""
        return self.batcher.room(priority)

    def full(self, priority: Priority = INTERACTIVE) -> bool:
        return self.batcher.full(priority)

    def count_refusal(self, priority: Priority = INTERACTIVE) -> None:
        """A request refused before its size was known (the fast 429)."""
        self.batcher.count_refusal(priority)

    @property
    def queued(self) -> int:
        return self.batcher.queued

    @property
    def encoder(self) -> TextEncoder:
        return self.model.encoder

    @property
    def sick(self) -> str | None:
        return self.health.sick

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {
            "variant": m.variant,
            "variant_choice": m.choice.as_dict() if m.choice else None,
            "provider": m.session.provider,
            "instances": len(m.sessions),
            "intra_op_threads": m.session.threads,
            "fast_lane": m.fast is not None,
            "inline_max_tokens": self.inline_max_tokens,
            "sha256": m.sha256,
        }

    def idle(self) -> bool:
        """Nothing queued, no batch running."""
        return not self.batcher.queued and not self.batcher.busy

    def limits(self) -> BatchLimits:
        b = self.batcher
        return BatchLimits(b.max_batch_size, b.max_batch_tokens, b.max_queue_items)

    def stalls(self, now: float, limit_s: float) -> list[tuple[str, float]]:
        """(which session, how long) for every batch running past `limit_s` seconds: its health.
        Each instance is named on its own, so one stuck session shows while the others serve."""
        name = self.name
        return [
            (name if self.batcher.runners == 1 else f"{name} (instance {runner})", now - since)
            for runner, since in sorted(self.batcher.running_since().items())
            if now - since > limit_s
        ]

    @property
    def info_labels(self) -> tuple[str, str, str, str]:
        """Its labels on the bertserve_model_info gauge: set when it serves, removed when a
        reload retires it."""
        return (self.name, self.manifest.task, self.model.variant, self.model.session.provider)

    async def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        for pool in self._runtime_pools:
            pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class _Lookup:
    """A request's rows as the cache left them: found (or None), and the futures of those
    still to come: its own queued items, and other requests' items it shares."""

    keys: list[tuple[str, bytes]]
    rows: list[np.ndarray | None]
    coming: list[tuple[str, bytes]]  # the keys of `own`, then of `shared`
    own: list[asyncio.Future[np.ndarray]]
    shared: list[asyncio.Future[np.ndarray]]


async def _answer(lookup: _Lookup, deadline: float) -> list[np.ndarray]:
    rows = lookup.rows
    if lookup.coming:
        # Another request's item is shielded: our deadline or departure must not cancel it.
        try:
            done = await _within([*lookup.own, *(asyncio.shield(f) for f in lookup.shared)], deadline)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            raise _SharedDropped from None
        found = dict(zip(lookup.coming, done, strict=True))
        rows = [row if row is not None else found[key] for key, row in zip(lookup.keys, rows, strict=True)]
    return rows  # type: ignore[return-value]


class _SharedDropped(Exception):
    """An in-flight item this request shared was cancelled by the request that queued it."""


def _retrieve(gathered: asyncio.Future[list[np.ndarray]]) -> None:
    """Mark a gathered future's outcome seen. When the request is cancelled (its client went
    away) while its rows are being cancelled too, the gather ends with CancelledError as an
    exception nobody awaits any more, and asyncio logged it at error level, once per request."""
    if not gathered.cancelled():
        gathered.exception()


async def _within(futures: Sequence[asyncio.Future[np.ndarray]], deadline: float) -> list[np.ndarray]:
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        gathered = asyncio.gather(*futures)
        gathered.add_done_callback(_retrieve)
        rows = await asyncio.wait_for(gathered, timeout=max(remaining, 0.0))
    except TimeoutError as exc:
        raise DeadlineExceeded(DEADLINE_PASSED + " before it finished") from exc
    return list(rows)
