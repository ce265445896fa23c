"""The engine process: every model's sessions, batcher and cache, serving the front ends.

Started by the supervisor (service/supervisor.py) when BERTSERVE_API_SERVERS is over 1. It
loads the model repository as a single-process service does (service/lifecycle.py), then
answers the front ends' requests (service/engine/wire.py) on a Unix stream socket, one
connection per front end (service/engine/channel.py): each Run queues its rows on the model's
batcher, so the rows of every front end ride in the same batches, and its reply carries the
output rows and the request's queue and batch times. A front end whose connection ends (it
died) has its requests cancelled: their clients are gone with it.

Its Status goes out on a PUB socket from a thread of its own, every wire.HEARTBEAT_S and
soon after a change that matters (a new table; a run while a queue is past half full, where
the front ends' fast 429 needs the room as it is): a busy event loop never makes the engine
look dead to the front ends, and an engine far from full does not send a Status a run.
SIGHUP reloads the repository; SIGTERM answers what is in flight, then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import zmq
from prometheus_client import generate_latest

from service import logs
from service.batching import Ticket
from service.engine import wire
from service.engine.cache import ResultCache
from service.engine.channel import Channel
from service.engine.client import ENGINE_SILENT_S, endpoints
from service.engine.model import LocalModel
from service.engine.seam import ServedModel
from service.errors import ServiceError, Unavailable
from service.lifecycle import release, start_up
from service.metrics import Metrics
from service.priorities import INTERACTIVE, parse_priority
from service.processes import IPC_DIR_VARIABLE
from service.reload import reload
from service.runtime.cpus import available_cpus
from service.settings import Settings
from service.state import AppState, watch_stalls
from service.tasks import registry

log = logging.getLogger("bertserve")
EXIT_STARTUP = 2
# A Status soon after a change (a request queued or answered), but at most this often.
STATUS_COALESCE_S = 0.005


class Engine:
    def __init__(self, state: AppState, ipc_dir: Path) -> None:
        self.state = state
        self._ipc_dir = ipc_dir
        self._server: asyncio.AbstractServer | None = None
        self._channels: set[Channel] = set()
        self._running: dict[tuple[Channel, int], asyncio.Task[None]] = {}
        self._chores: set[asyncio.Task[None]] = set()  # reloads under way: held until done
        # Every model served since start, by identity, while anything holds it: a Run admitted
        # by a front end just before a reload's swap still finds the model it was admitted on.
        self._known: weakref.WeakValueDictionary[str, LocalModel] = weakref.WeakValueDictionary()
        self._changed = threading.Event()
        self._stop_publishing = threading.Event()
        self._generation = 0
        self._table: object = None
        self._infos: list[wire.ModelInfo] = []
        self._defaults: dict[str, str] = {}

    async def bind(self) -> threading.Thread:
        requests, status = endpoints(self._ipc_dir)
        with contextlib.suppress(FileNotFoundError):  # a dead engine's socket file
            os.unlink(requests)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: Channel(self._received, self._lost), requests)
        publisher = threading.Thread(target=self._publish, args=(status,), name="engine-status", daemon=True)
        publisher.start()
        return publisher

    def _received(self, sender: Channel, payload: memoryview) -> None:
        self._channels.add(sender)
        message = wire.requests.decode(payload)
        if isinstance(message, wire.Run):
            # Counted as it arrives, before any request read in this pass runs: the first one
            # that runs already sees the others (the fast lane runs a request alone at once).
            self.state.inflight += 1
            self.state.connections += 1
            key = (sender, message.id)
            task = asyncio.ensure_future(self._run(sender, message))
            self._running[key] = task
            task.add_done_callback(partial(self._finished, key))
        elif isinstance(message, wire.Cancel):
            running = self._running.pop((sender, message.id), None)
            if running is not None:
                running.cancel()
        elif isinstance(message, wire.Reload):
            reloading = asyncio.ensure_future(self._reload(sender, message.id))
            self._chores.add(reloading)
            reloading.add_done_callback(self._chores.discard)
        else:
            text = generate_latest(self.state.metrics.registry).decode()
            self._reply(sender, wire.MetricsText(message.id, text))

    def _lost(self, sender: Channel) -> None:
        """A front end's connection ended: it died, and its clients with it."""
        self._channels.discard(sender)
        for key in [k for k in self._running if k[0] is sender]:
            self._running.pop(key).cancel()

    def _finished(self, key: tuple[Channel, int], _: asyncio.Task[None]) -> None:
        # Here, not in _run: a task cancelled before its first step never runs its body.
        self.state.inflight -= 1
        self.state.connections -= 1
        self._running.pop(key, None)

    def _model(self, name: str, identity: str) -> LocalModel | None:
        served = self.state.models.get(name)
        if isinstance(served, LocalModel) and served.identity == identity:
            return served
        return self._known.get(identity)

    async def _run(self, sender: Channel, message: wire.Run) -> None:
        model = self._model(message.model, message.identity)
        if model is None:
            self._reply(sender, wire.Failed(message.id, "unavailable", "the model was replaced or removed: retry"))
            return
        ids = message.ids.unpack()
        ticket = Ticket()
        deadline = asyncio.get_running_loop().time() + message.timeout_s
        model.users += 1
        self._room_changed(model)
        try:
            priority = parse_priority(message.priority) or INTERACTIVE
            # Bulk work always queues, as in one process (service/tasks/common.py, run_ids).
            live = priority == INTERACTIVE and not message.states
            rows = await model.run_now(ids, deadline, ticket, counted=True) if live else None
            if rows is None:
                model.check_admission(len(ids), "input", priority)
                rows = await model.submit(ids, deadline, ticket, priority, message.states)
            runs = [wire.BatchRun(r.started, r.seconds, r.items) for r in ticket.runs]
            self._reply(sender, wire.Done(message.id, wire.Rows.pack(rows), ticket.queue_s, runs, ticket.queued_at))
        except ServiceError as exc:
            self._reply(sender, wire.Failed(message.id, exc.kind, exc.message, exc.param))
        except asyncio.CancelledError:
            pass  # the front end's client left; the front end expects no reply
        except Exception:
            log.exception("engine request failed", extra={"model": message.model})
            self._reply(sender, wire.Failed(message.id, "internal", "internal error"))
        finally:
            model.users -= 1
            self._room_changed(model)

    def _room_changed(self, model: LocalModel) -> None:
        """A Status soon when the queue is past half full, where a front end's fast 429 turns
        on the room; below, the heartbeat's is close enough (a front end counts what it sent
        since, and the engine checks again). A Status a run cost the engine and each front
        end about as much as the run of a small model."""
        if model.room() * 2 < model.limits().max_queue_items:
            self._changed.set()

    async def _reload(self, sender: Channel, request_id: int) -> None:
        try:
            changes = await reload(self.state)
        except ServiceError as exc:
            self._reply(sender, wire.Failed(request_id, exc.kind, exc.message, exc.param))
            return
        self.remember()
        self._reply(
            sender, wire.Reloaded(request_id, changes.added, changes.replaced, changes.removed, changes.unchanged)
        )

    def remember(self) -> None:
        for model in self.state.models.values():
            if isinstance(model, LocalModel):
                self._known[model.identity] = model
        self._changed.set()

    def _reply(self, sender: Channel, reply: wire.Reply) -> None:
        sender.send(wire.encoder.encode(reply))

    def _status(self) -> wire.Status:
        state = self.state
        table = state.models
        if table is not self._table:  # a start-up or a reload's swap: a new model table
            models = dict(table)
            # What a model is does not change while it is served: described once a table,
            # not in each of the up to 200 Status messages a second of a busy engine.
            self._infos = [_info(name, served) for name, served in models.items()]
            self._defaults = {str(kind): name for kind, name in state.defaults.items()}
            self._table = table
            self._generation += 1
        room, queued, sick = {}, {}, {}
        for name, served in dict(table).items():
            room[name], queued[name] = served.room(), served.queued
            if served.sick:
                sick[name] = served.sick
        return wire.Status(
            os.getpid(), self._generation, self._infos, self._defaults, room, queued, state.unready_reason(), sick
        )

    def _publish(self, address: str) -> None:
        """The Status thread: its own socket (a ZeroMQ socket belongs to one thread)."""
        context = zmq.Context()
        socket = context.socket(zmq.PUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.bind(address)
        try:
            while not self._stop_publishing.is_set():
                if self._changed.wait(wire.HEARTBEAT_S):
                    time.sleep(STATUS_COALESCE_S)
                    self._changed.clear()
                try:
                    socket.send(wire.encoder.encode(self._status()))
                except RuntimeError:  # a dict changed size while read: the next round has it
                    continue
        finally:
            socket.close()
            context.term()

    async def drain(self) -> None:
        """Answer every request in flight (each within its deadline), then stop."""
        self.state.start_draining()
        while self._running:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self._stop_publishing.set()
        for task in self._running.values():
            task.cancel()
        if self._server is not None:
            self._server.close()
        for channel in list(self._channels):
            channel.close()


def _info(name: str, served: ServedModel) -> wire.ModelInfo:
    limits = served.limits()
    return wire.ModelInfo(
        name,
        served.identity,
        str(served.model.directory) if isinstance(served, LocalModel) else "",
        served.loaded_at,
        served.describe(),
        limits.max_batch_size,
        limits.max_batch_tokens,
        limits.max_queue_items,
        served.info_labels,
    )


async def run_engine(settings: Settings, ipc_dir: Path) -> int:
    state = AppState(settings, Metrics(), registry.serves())
    state.cache = ResultCache(settings.cache_bytes) if settings.cache_bytes else None
    state.retire_after_s = ENGINE_SILENT_S  # every front end has a Status of the new table by then
    state.tokenize_pool = ThreadPoolExecutor(max_workers=min(4, available_cpus()), thread_name_prefix="tokenize")
    engine = Engine(state, ipc_dir)
    await engine.bind()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    failed: list[str] = []

    def on_load_error(reason: str) -> None:
        failed.append(reason)
        stopping.set()

    def on_hangup() -> None:
        async def hangup() -> None:
            try:
                await reload(state)
                engine.remember()
            except ServiceError as exc:
                log.error("reload refused", extra={"reason": exc.message})

        task = loop.create_task(hangup(), name="sighup-reload")
        state.reload_tasks.add(task)
        task.add_done_callback(state.reload_tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    tasks = [
        loop.create_task(start_up(state, on_load_error), name="load"),
        loop.create_task(watch_stalls(state), name="stall-watchdog"),
    ]
    ready = loop.create_task(_remember_when_ready(state, engine))
    await stopping.wait()
    ready.cancel()
    if failed:
        print(f"bertserve serve: error: {failed[0]}", file=sys.stderr, flush=True)
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(engine.drain(), settings.request_timeout_s + 1)
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for served in list(state.models.values()):
        if isinstance(served, LocalModel):
            await release(served)
    engine.close()
    state.tokenize_pool.shutdown(wait=False, cancel_futures=True)
    return EXIT_STARTUP if failed else 0


async def _remember_when_ready(state: AppState, engine: Engine) -> None:
    while not state.ready:
        await asyncio.sleep(0.01)
    engine.remember()


def main() -> int:
    settings = Settings()
    logs.configure(settings.log_level)
    ipc_dir = Path(os.environ[IPC_DIR_VARIABLE])
    try:
        import uvloop  # the loop uvicorn runs the front ends on, where installed

        return uvloop.run(run_engine(settings, ipc_dir))
    except ImportError:
        return asyncio.run(run_engine(settings, ipc_dir))
    except Unavailable as exc:
        print(f"bertserve serve: error: {exc.message}", file=sys.stderr, flush=True)
        return EXIT_STARTUP


if __name__ == "__main__":
    sys.exit(main())
