"""A front end's side of the engine process: `EngineClient` and the `RemoteModel`s it serves.

A front end does HTTP, validation, tokenization and post-processing; the engine process
(service/engine_process.py) holds the sessions, the batchers and the result cache, so that
every front end's requests meet in one batch. A request's token ids go to the engine as one
buffer (service/engine/wire.py) over this front end's own stream connection
(service/engine/channel.py), and its output rows come back the same way.

What a front end knows of the engine comes from its Status messages, a few a second: the
models and their identities, the room in each queue (so the fast 429 needs no round trip;
the engine refuses what does not fit anyway), and its health. When none has come for
ENGINE_SILENT_S, or the engine's socket closes, the engine is taken for dead: readiness
turns 503 naming the cause, and every request waiting on it is answered 503 at once. The
front end connects again, every CONNECT_RETRY_S, until a new engine listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from service.batching import INTERACTIVE, Priority, Ticket
from service.batching.policy import BatchRun
from service.engine import wire
from service.engine.channel import Channel
from service.engine.seam import BatchLimits
from service.engine.tokenizing import tokenize
from service.errors import (
    BY_KIND,
    DEADLINE_PASSED,
    DeadlineExceeded,
    InvalidInput,
    Overloaded,
    ServiceError,
    Unavailable,
)
from service.manifest import Manifest
from service.metrics import Metrics
from service.runtime.tokenizer import Encoded, TextEncoder

log = logging.getLogger("bertserve")


# Silence after which the engine is taken for dead: it publishes its Status every
# wire.HEARTBEAT_S from a thread of its own, so a busy engine is never silent this long.
ENGINE_SILENT_S = 1.0
# Past a request's deadline, how long a front end waits for the engine's own 504 before it
# answers one itself (the engine drops the items at the deadline; this covers a lost reply).
DEADLINE_SLACK_S = 0.5
# How often a front end tries to connect to an engine that does not listen yet (starting or
# restarting: it binds before it loads its models, so this is never what readiness waits on).
CONNECT_RETRY_S = 0.01
NOT_CONNECTED = "the engine process is starting"


def endpoints(ipc_dir: Path) -> tuple[str, str]:
    """The engine's request socket (a Unix stream socket's path) and status socket (ZeroMQ's
    ipc transport), both in the supervisor's run folder."""
    return str(ipc_dir / "engine.sock"), f"ipc://{ipc_dir}/status.sock"


class EngineClient:
    def __init__(self, ipc_dir: Path, metrics: Metrics) -> None:
        self._ipc_dir = ipc_dir
        self._metrics = metrics
        self._context = zmq.asyncio.Context()
        self._channel: Channel | None = None
        self._status = self._context.socket(zmq.SUB)
        self._status.setsockopt(zmq.SUBSCRIBE, b"")
        self._status.setsockopt(zmq.LINGER, 0)
        self._ids = itertools.count(1)
        # What waits for each reply: a future, or for a Run the _RunReply that resolves its rows.
        self._pending: dict[int, asyncio.Future[Any] | _RunReply] = {}
        self.status: wire.Status | None = None
        self._heard = 0.0  # monotonic time of the last Status
        self.down: str | None = NOT_CONNECTED
        self.models: dict[str, RemoteModel] = {}
        self._engine_pid: int | None = None
        self._restarted = False  # the engine died since it last served: until it serves again

    def connect(self) -> None:
        _, status = endpoints(self._ipc_dir)
        self._status.connect(status)

    def close(self) -> None:
        self._fail_pending(Unavailable("the service is shutting down"))
        if self._channel is not None:
            self._channel.close()
        # Every socket of the context closed, the status monitor's included, then ended:
        # `term` alone waits for a socket left open.
        self._context.destroy(linger=0)

    async def follow(self, on_status: Callable[[wire.Status], Awaitable[None]], on_down: Callable[[str], None]) -> None:
        """Read replies and Status messages until cancelled; `on_status` hears each Status,
        `on_down` that the engine went silent."""
        readers = [
            asyncio.ensure_future(self._keep_connected(on_down)),
            asyncio.ensure_future(self._read_status(on_status)),
            asyncio.ensure_future(self._watch(on_down)),
            asyncio.ensure_future(self._watch_socket(on_down)),
        ]
        try:
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in readers:
                task.cancel()
            # Their own `finally` runs now, before the sockets they use are closed.
            await asyncio.gather(*readers, return_exceptions=True)

    async def _keep_connected(self, on_down: Callable[[str], None]) -> None:
        """Hold the request connection: connect while the engine listens, and again after it
        ends (the engine died: what waited on it is answered 503 at once)."""
        path, _ = endpoints(self._ipc_dir)
        loop = asyncio.get_running_loop()
        while True:
            ended: asyncio.Future[None] = loop.create_future()

            def end(_: Channel, ended: asyncio.Future[None] = ended) -> None:
                if not ended.done():
                    ended.set_result(None)

            try:
                _, channel = await loop.create_unix_connection(lambda: Channel(self._received, end), path)
            except OSError:  # not listening yet
                await asyncio.sleep(CONNECT_RETRY_S)
                continue
            self._channel = channel
            try:
                await ended
            finally:
                self._channel = None
                channel.close()
            if self._engine_pid is not None:
                self._lost("the engine process stopped: restarting", on_down)
            else:
                self._fail_pending(Unavailable("the engine process stopped while this request ran: retry"))

    def _received(self, _: Channel, payload: memoryview) -> None:
        reply = wire.replies.decode(payload)
        future = self._pending.pop(reply.id, None)
        if future is not None and not future.done():
            future.set_result(reply)

    async def _read_status(self, on_status: Callable[[wire.Status], Awaitable[None]]) -> None:
        while True:
            status = wire.statuses.decode(await self._status.recv())
            self._heard = time.monotonic()
            if self._engine_pid is not None and status.pid != self._engine_pid:
                self._fail_pending(Unavailable("the engine process restarted while this request ran: retry"))
                self._restarted = True
            self._engine_pid = status.pid
            self.status = status
            if status.unready is None and self._channel is None:
                self.down = NOT_CONNECTED  # ready once this front end's connection is made too
            elif status.unready is None:
                self.down = None
                self._restarted = False
            else:  # a restarted engine loads its models again: say why it is loading
                self.down = f"the engine process restarted: {status.unready}" if self._restarted else status.unready
            for name, model in self.models.items():
                # A model the engine no longer lists is on its way out of this front end's
                # table (`on_status` swaps it): its room stays as it was, so a request that
                # meets it meanwhile gets the engine's answer (404 once retired), not a 429.
                if name in status.room:
                    model.room_now = status.room[name]
            await on_status(status)

    async def _watch(self, on_down: Callable[[str], None]) -> None:
        while True:
            await asyncio.sleep(ENGINE_SILENT_S / 4)
            if self._engine_pid is not None and time.monotonic() - self._heard > ENGINE_SILENT_S:
                self._lost(
                    f"the engine process is not answering (silent for over {ENGINE_SILENT_S:.0f}s): restarting", on_down
                )

    async def _watch_socket(self, on_down: Callable[[str], None]) -> None:
        """A dead engine's socket closes at once: every front end hears it within
        milliseconds, where the silence takes ENGINE_SILENT_S and each front end's own
        timer (so for a moment one front end says ready while its sibling says 503)."""
        monitor = self._status.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            while True:
                await monitor.recv_multipart()  # an event: the only kind asked for, a disconnect
                if self._engine_pid is not None:
                    self._lost("the engine process stopped: restarting", on_down)
        finally:
            with contextlib.suppress(zmq.ZMQError):  # the status socket may be closed already
                self._status.disable_monitor()
            monitor.close()

    def _lost(self, reason: str, on_down: Callable[[str], None]) -> None:
        self.down = reason
        self._engine_pid = None
        self._restarted = True
        self._fail_pending(Unavailable("the engine process stopped while this request ran: retry"))
        on_down(reason)

    def _fail_pending(self, error: ServiceError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a request that left must not log it

    def ask(self, message: wire.Reload | wire.Metrics) -> asyncio.Future[Any]:
        """Send a request now (queued in order on the socket) and give back what waits for its
        reply."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._send(message, future)
        return future

    def ask_run(self, message: wire.Run, waiter: _RunReply) -> None:
        self._send(message, waiter)

    def _send(self, message: wire.Run | wire.Reload | wire.Metrics, waiter: asyncio.Future[Any] | _RunReply) -> None:
        channel = self._channel
        if self.down is not None or channel is None:
            raise Unavailable(self.down or NOT_CONNECTED)
        self._pending[message.id] = waiter
        channel.send(wire.encoder.encode(message))

    def cancel(self, request_id: int) -> None:
        if self._pending.pop(request_id, None) is not None and self._channel is not None:
            self._channel.send(wire.encoder.encode(wire.Cancel(request_id)))

    def next_id(self) -> int:
        return next(self._ids)

    async def reload(self) -> wire.Reloaded:
        reply = await self.ask(wire.Reload(self.next_id()))
        if isinstance(reply, wire.Failed):
            raise _error(reply)
        assert isinstance(reply, wire.Reloaded)
        return reply

    async def metrics_text(self, timeout_s: float = 2.0) -> str | None:
        """The engine's own metrics, or None when it does not answer."""
        request_id = self.next_id()
        try:
            reply = await asyncio.wait_for(self.ask(wire.Metrics(request_id)), timeout_s)
        except (TimeoutError, ServiceError):
            self._pending.pop(request_id, None)
            return None
        return reply.text if isinstance(reply, wire.MetricsText) else None

    def remote(self, info: wire.ModelInfo, pool: ThreadPoolExecutor) -> RemoteModel:
        """The model as this front end serves it: the one already built when the engine still
        serves the same identity (its tokenizer is loaded once), else a new one."""
        known = self.models.get(info.name)
        if known is not None and known.identity == info.identity:
            known.info = info
            return known
        return RemoteModel(self, info, pool, self._metrics)


def _error(failed: wire.Failed) -> ServiceError:
    cls = BY_KIND.get(failed.kind, ServiceError)  # type: ignore[call-overload]
    return cls(failed.message, failed.param)  # type: ignore[no-any-return]


class _RunReply:
    """What waits for a Run's reply in the client's pending table: it turns the reply into the
    request's rows (or its error) as the reply is read."""

    __slots__ = ("_overdue", "_rows", "_ticket")

    def __init__(
        self, rows: asyncio.Future[list[np.ndarray]], ticket: Ticket | None, overdue: asyncio.TimerHandle
    ) -> None:
        self._rows = rows
        self._ticket = ticket
        self._overdue = overdue

    def done(self) -> bool:
        return self._rows.done()

    def set_result(self, reply: wire.Reply) -> None:
        self._overdue.cancel()
        if isinstance(reply, wire.Failed):
            self._rows.set_exception(_error(reply))
            return
        assert isinstance(reply, wire.Done)
        ticket = self._ticket
        if ticket is not None:
            ticket.queue_s = max(ticket.queue_s, reply.queue_s)
            ticket.queued_at = reply.queued_at
            ticket.runs.extend(BatchRun(r.started, r.seconds, r.items) for r in reply.runs)
        self._rows.set_result(reply.rows.unpack())

    def set_exception(self, error: BaseException) -> None:
        self._overdue.cancel()
        self._rows.set_exception(error)

    def exception(self) -> BaseException | None:
        return self._rows.exception()


class RemoteModel:
    """A model served by the engine process, as a front end sees it (the engine seam:
    service/engine/seam.py). Its tokenizer is loaded here, from the same model directory."""

    def __init__(self, client: EngineClient, info: wire.ModelInfo, pool: ThreadPoolExecutor, metrics: Metrics) -> None:
        self._client = client
        self.info = info
        self.name = info.name
        self.identity = info.identity
        self.loaded_at = info.loaded_at
        directory = Path(info.directory)
        self.manifest = Manifest.read(directory)
        self._encoder = TextEncoder(directory / "tokenizer.json", self.manifest.max_length)
        self._pool = pool
        self._tokenize_seconds = metrics.tokenize.labels(self.name)
        self._rejections = metrics.rejections
        self.users = 0
        self.room_now = info.max_queue_items  # from the engine's last Status, less what was sent since

    @property
    def encoder(self) -> TextEncoder:
        return self._encoder

    @property
    def queued(self) -> int:
        status = self._client.status
        return status.queued.get(self.name, 0) if status is not None else 0

    @property
    def sick(self) -> str | None:
        status = self._client.status
        return status.sick.get(self.name) if status is not None else None

    @property
    def info_labels(self) -> tuple[str, str, str, str]:
        return self.info.info_labels

    async def tokenize(
        self, items: Sequence[str] | Sequence[tuple[str, str]], truncate: bool, max_second_tokens: int | None = None
    ) -> Encoded:
        return await tokenize(self._encoder, self._pool, self._tokenize_seconds, items, truncate, max_second_tokens)

    async def run_now(
        self, ids: Sequence[np.ndarray], deadline: float, ticket: Ticket | None
    ) -> list[np.ndarray] | None:
        return None  # the engine decides, in its process, whether a batch runs at once

    def submit(
        self,
        ids: Sequence[np.ndarray],
        deadline: float,
        ticket: Ticket | None = None,
        priority: Priority = INTERACTIVE,
        states: bool = False,
    ) -> Awaitable[list[np.ndarray]]:
        """Send the rows to the engine now at their priority level (Overloaded when they do
        not fit, as far as this front end knows; the engine checks again, the room of each
        level included) and give back what waits for its reply: a future resolved by the
        callback that reads the reply (no task, no turn of the loop between), failed with a
        504 when even the engine's own 504 is overdue, and cancelling it (the client left)
        tells the engine to drop the items."""
        self._check_room(len(ids), priority)
        loop = asyncio.get_running_loop()
        request_id = self._client.next_id()
        timeout = max(0.0, deadline - loop.time())
        message = wire.Run(request_id, self.name, self.identity, wire.Rows.pack(ids), timeout, priority, states)
        rows: asyncio.Future[list[np.ndarray]] = loop.create_future()
        overdue = loop.call_at(deadline + DEADLINE_SLACK_S, self._overdue, request_id, rows)
        try:
            self._client.ask_run(message, _RunReply(rows, ticket, overdue))
        except ServiceError:
            overdue.cancel()
            raise
        self.room_now -= len(ids)
        rows.add_done_callback(partial(self._settled, request_id, overdue))
        return rows

    def _overdue(self, request_id: int, rows: asyncio.Future[list[np.ndarray]]) -> None:
        if not rows.done():
            self._client.cancel(request_id)
            rows.set_exception(DeadlineExceeded(DEADLINE_PASSED + " before it finished"))

    def _settled(self, request_id: int, overdue: asyncio.TimerHandle, rows: asyncio.Future[list[np.ndarray]]) -> None:
        overdue.cancel()
        if rows.cancelled():
            self._client.cancel(request_id)  # the client left: the engine drops the items

    def _check_room(self, items: int, priority: Priority) -> None:
        # The engine's Status gives the room of the whole queue: a batch-priority request
        # past its level's room is refused by the engine itself.
        if self._client.down is not None:
            raise Unavailable(self._client.down)
        if items > self.room_now:
            self._rejections.labels(self.name, "overloaded", priority).inc(items)
            raise Overloaded(
                f"queue full at {self.info.max_queue_items} items (BERTSERVE_MAX_QUEUE_ITEMS): retry later"
            )

    def check_admission(self, items: int, param: str, priority: Priority = INTERACTIVE) -> None:
        capacity = self.info.max_queue_items
        if items > capacity:
            raise InvalidInput(
                f"{param} has {items} items, more than the model's whole queue of {capacity} "
                "(BERTSERVE_MAX_QUEUE_ITEMS): split the request",
                param=param,
            )
        self._check_room(items, priority)

    def room(self, priority: Priority = INTERACTIVE) -> int:
        return max(0, self.room_now)

    def full(self, priority: Priority = INTERACTIVE) -> bool:
        return self.room_now <= 0

    def count_refusal(self, priority: Priority = INTERACTIVE) -> None:
        self._rejections.labels(self.name, "overloaded", priority).inc()

    def idle(self) -> bool:
        return self.users == 0

    def limits(self) -> BatchLimits:
        i = self.info
        return BatchLimits(i.max_batch_size, i.max_batch_tokens, i.max_queue_items)

    def stalls(self, now: float, limit_s: float) -> list[tuple[str, float]]:
        return []  # the engine watches its own runs: a stall there is its Status's `unready`

    def describe(self) -> dict[str, Any]:
        return dict(self.info.describe)
