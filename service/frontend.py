"""A front-end process's view of the engine process: the model table it serves, its health,
and reloads, kept in step with the engine's Status messages (service/engine/client.py).

The front end's AppState is the one a single process has, so every route, check and header
behaves the same; what differs is where its models come from. Each new model table (the
engine's start-up, a reload, a restarted engine) becomes one swap of `state.models`, built
from RemoteModels that tokenize here and run there. Readiness is the engine's: 503 with the
engine's own reason while it loads, stalls or keeps failing, and with the cause when it goes
silent (service/state.py, `unready_reason`).

Front ends take in each Status on their own, milliseconds apart, and share one port: the
next request after one front end said ready, or served a new table, may reach another that
has not yet. So a request that arrives while its front end is not settled (started and not
yet ready, or told of a table it does not serve yet) waits until it is, CATCH_UP_S at most
(`CatchUp`), and then meets what its sibling answered with. A front end that waits for an
engine still loading its models answers 503 after that wait; one whose engine is down
answers 503 at once. The health routes never wait: they say where this process stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, cast

import zmq
import zmq.asyncio
from prometheus_client import generate_latest

from service.engine import wire
from service.engine.client import EngineClient
from service.kinds import ModelKind
from service.metrics_merge import merge
from service.state import AppState

log = logging.getLogger("bertserve")

FRONT_PREFIX = "front-"  # a front end's metrics socket in the run folder: front-<pid>.sock
SIBLING_WAIT_S = 0.5  # how long /metrics waits for another process's metrics
# How long a reload waits for this front end to see the engine's new model table.
TABLE_WAIT_S = 5.0
# How long a request waits for its front end to catch up with the engine's table: the first
# Status comes within 0.1 s of the start, a table takes milliseconds to take in.
CATCH_UP_S = 2.0
# How long a starting front end waits for its first Status before it takes connections.
FIRST_STATUS_S = 10.0


class EngineFollower:
    def __init__(self, state: AppState, engine: EngineClient, ipc_dir: Path, announce: bool = True) -> None:
        self._announce = announce  # the first front end says "ready" for the service
        self._dir = ipc_dir
        self._context = zmq.asyncio.Context.instance()
        self._state = state
        state.gather_metrics = self.gather_metrics
        self._engine = engine
        self._seen: tuple[int, int] | None = None  # (engine pid, table generation) served now
        self._table_changed = asyncio.Event()
        # Set while this front end is ready and serves the table the engine last announced.
        self.settled = asyncio.Event()
        self._heard = asyncio.Event()  # a first Status taken in
        state.forward_reload = self.reload

    async def follow(self) -> None:
        self._engine.connect()
        answering = asyncio.ensure_future(self._answer_siblings())
        try:
            await self._engine.follow(self._on_status, self._state.set_engine_down)
        finally:
            answering.cancel()

    async def _answer_siblings(self) -> None:
        """This front end's own metrics, for a sibling's /metrics: a socket in the run folder."""
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.bind(f"ipc://{self._dir}/{FRONT_PREFIX}{os.getpid()}.sock")
        try:
            while True:
                sender, _ = await socket.recv_multipart()
                await socket.send_multipart([sender, generate_latest(self._state.metrics.registry)])
        finally:
            socket.close()

    async def gather_metrics(self) -> bytes:
        """The whole service's metrics: this front end's, every sibling's and the engine's,
        merged (service/metrics_merge.py). A process that does not answer within
        SIBLING_WAIT_S is left out (a restarting one: its counters start again from 0)."""
        own = generate_latest(self._state.metrics.registry).decode()
        mine = f"{FRONT_PREFIX}{os.getpid()}.sock"
        siblings = [p for p in self._dir.glob(f"{FRONT_PREFIX}*.sock") if p.name != mine]
        texts = await asyncio.gather(self._engine.metrics_text(SIBLING_WAIT_S), *map(self._ask_sibling, siblings))
        return merge([own, *(t for t in texts if t is not None)]).encode()

    async def _ask_sibling(self, path: Path) -> str | None:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.connect(f"ipc://{path}")
            await socket.send(b"metrics")
            return (await asyncio.wait_for(socket.recv(), SIBLING_WAIT_S)).decode()
        except (TimeoutError, zmq.ZMQError):
            return None
        finally:
            socket.close()

    async def _on_status(self, status: wire.Status) -> None:
        state = self._state
        try:
            if (status.pid, status.generation) != self._seen and status.models:
                self.settled.clear()
                await self._serve(status)
        finally:
            state.set_engine_down(self._engine.down)
            if status.unready is None and state.models and not state.ready:
                state.mark_ready()
                if self._announce:
                    count = f"{len(state.models)} model{'s' if len(state.models) != 1 else ''}"
                    where = f" on {state.url}" if state.url else ""
                    log.info(f"ready: serving {count}{where}", extra={"models": sorted(state.models)})
            if state.ready:
                self.settled.set()
            self._heard.set()
        state.check_health(time.monotonic())

    async def first_status(self) -> None:
        """Return once the first Status is taken in (FIRST_STATUS_S at most): the lifespan
        waits for it, so a front end started beside an engine that serves (one restarted
        after a crash) takes its first connection ready, on the engine's table; beside an
        engine still loading, it answers 503 with the engine's reason meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._heard.wait(), FIRST_STATUS_S)

    async def _serve(self, status: wire.Status) -> None:
        state, engine = self._state, self._engine
        pool = state.tokenize_pool
        assert pool is not None, "the lifespan sets the pool before following the engine"
        # A new model's tokenizer is read from its directory: off the loop.
        models = await asyncio.to_thread(lambda: {info.name: engine.remote(info, pool) for info in status.models})
        old = engine.models
        for name, model in old.items():
            if models.get(name) is not model:
                state.metrics.model_info.remove(*model.info_labels)
        for model in models.values():
            model.room_now = status.room.get(model.name, 0)
            state.metrics.model_info.labels(*model.info_labels).set(1)
        engine.models = models
        state.serve(models, {cast(ModelKind, k): v for k, v in status.defaults.items()})
        self._seen = (status.pid, status.generation)
        self._table_changed.set()
        self._table_changed = asyncio.Event()

    async def reload(self) -> dict[str, list[str]]:
        """POST /admin/reload or SIGHUP on this front end: the engine reloads; answered once
        this front end serves the new table (the others follow within a Status or two)."""
        waiting = self._table_changed
        reply = await self._engine.reload()
        changed = reply.added or reply.replaced or reply.removed
        if changed:
            with contextlib.suppress(TimeoutError):  # the reply stands: the engine serves the new table
                await asyncio.wait_for(waiting.wait(), TABLE_WAIT_S)
        return {
            "added": reply.added,
            "replaced": reply.replaced,
            "removed": reply.removed,
            "unchanged": reply.unchanged,
        }


class CatchUp:
    """ASGI middleware of a front end: a request waits while the front end is not settled
    (the module's docstring), CATCH_UP_S at most, unless the engine is down; the health
    routes never wait."""

    def __init__(self, app: Any, follower: EngineFollower, state: AppState) -> None:
        self.app = app
        self._settled = follower.settled
        self._state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            not self._settled.is_set()
            and scope["type"] == "http"
            and not scope["path"].startswith("/health/")
            and not self._state.engine_down
        ):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), CATCH_UP_S)
        await self.app(scope, receive, send)
