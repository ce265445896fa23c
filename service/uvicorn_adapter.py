"""Everything bertserve needs from uvicorn that uvicorn has no public option for, in one place.

1. A header timeout. uvicorn's keep-alive timeout covers idle connections between requests,
   but nothing bounds the time a client takes to send a request's headers (slowloris). The
   protocol subclass below arms a timer when a connection opens and when a request begins,
   and disarms it once the headers are in; past it, a 408 in the error envelope, then close.
2. A cap on open connections, answered in the envelope. uvicorn's `limit_concurrency` caps
   the same count, but answers with its own text/plain 503 from outside the app, without the
   envelope or an X-Request-ID; the cap here answers like every other error.
3. A draining SIGTERM. uvicorn stops listening at once on SIGTERM; behind a load balancer
   that turns the requests racing the signal into connection errors. `DrainingServer` keeps
   listening, answers 503 (readiness and new requests), lets accepted requests finish, then
   exits 0 within the drain timeout.

4. Holding a connection refused with a fast 429 (`service/backpressure.py`): after the
   response, reading stops (uvicorn's flow control) and the keep-alive timer is disarmed
   until the connection's turn comes; then both are restored.

What this leans on, checked by `assumptions()` (and by a test that fails by name when a new
uvicorn breaks one): HttpToolsProtocol's hooks `connection_made`, `on_message_begin`,
`on_headers_complete`, `on_response_complete`, `connection_lost`, `timeout_keep_alive_handler`,
its attributes `loop`, `transport`, `connections`, `flow`, `pipeline`, `scope`,
`timeout_keep_alive_task`, `timeout_keep_alive`; `uvicorn.Server.handle_exit(sig, frame)` and
`should_exit`. pyproject bounds uvicorn to the
releases this was checked on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import time
from collections import deque
from functools import partial
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.backpressure import HeldConnections
from service.errors import RequestTimeout, Unavailable
from service.http_errors import raw_http
from service.request_context import Departure, context_of
from service.request_ids import new_request_id
from service.state import AppState

log = logging.getLogger("bertserve")


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout_s: float = 10.0
    max_connections: int = 4096
    held: HeldConnections | None = None  # where a connection refused with a fast 429 waits
    state: AppState | None = None  # told how many connections are open

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        # The requests read and not yet answered, oldest first (pipelined ones are answered in
        # order): each told when the connection ends.
        self._unanswered: deque[Departure] = deque()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._count()
        if len(self.connections) > self.max_connections:
            refusal = Unavailable("too many open connections (BERTSERVE_MAX_CONNECTIONS): retry later")
            transport.write(raw_http(refusal, new_request_id()))
            transport.close()
            return
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        context = context_of(self.scope)
        context.departure = Departure()
        self._unanswered.append(context.departure)
        if self.held is not None and self.held.request_started(self):
            # It waited its turn: the middleware lets it in; its promise of room ends once queued.
            context.resumed = partial(self.held.release, self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._unanswered:
            self._unanswered.popleft()
        if self.held is None:
            return
        task = context_of(self.scope).hold_for  # set with a fast 429
        if task and not self.transport.is_closing() and not self.pipeline:
            self.held.hold(task, self)
        else:
            self.held.release(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.held is not None:
            self.held.release(self)
        super().connection_lost(exc)
        self._count()
        while self._unanswered:
            self._unanswered.popleft().happened()

    def _count(self) -> None:
        if self.state is not None:
            self.state.connections = len(self.connections)

    # Holdable, for HeldConnections: a held connection is neither read nor timed out as idle.
    def pause(self) -> None:
        self.flow.pause_reading()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def resume(self) -> None:
        self.flow.resume_reading()
        if self.timeout_keep_alive_task is None and not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def closing(self) -> bool:
        return bool(self.transport.is_closing())

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            late = RequestTimeout("request headers not received in time (BERTSERVE_HEADER_TIMEOUT_S)")
            self.transport.write(raw_http(late, new_request_id()))
            self.transport.close()


def protocol_class(
    header_timeout_s: float, max_connections: int, held: HeldConnections, state: AppState | None = None
) -> type[GuardedHttpProtocol]:
    """A protocol class carrying this server's limits (uvicorn instantiates it per connection)."""
    return type(
        "ConfiguredHttpProtocol",
        (GuardedHttpProtocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections, "held": held, "state": state},
    )


class DrainingServer(uvicorn.Server):
    """On SIGTERM: readiness turns 503 and new requests get 503 (a load balancer retries them
    elsewhere), requests already accepted finish, then the server exits, within the drain
    timeout. A second signal, or SIGINT, stops at once the way uvicorn does."""

    def __init__(self, config: uvicorn.Config, state: AppState) -> None:
        super().__init__(config)
        self.state = state
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._draining:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self.state.start_draining()
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain()))

    async def _drain(self) -> None:
        timeout = self.state.settings.drain_timeout_s
        log.info("draining", extra={"inflight": self.state.inflight, "timeout_s": timeout})
        deadline = time.monotonic() + timeout
        while self.state.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        log.info("drained", extra={"inflight": self.state.inflight})
        self.should_exit = True


def assumptions() -> list[str]:
    """What of the above no longer holds in the installed uvicorn: empty when all is well."""
    broken = []
    hooks = ("connection_made", "on_message_begin", "on_headers_complete", "on_response_complete", "connection_lost")
    for hook in (*hooks, "timeout_keep_alive_handler"):
        if not callable(getattr(HttpToolsProtocol, hook, None)):
            broken.append(f"HttpToolsProtocol.{hook} is gone")
    init = inspect.getsource(HttpToolsProtocol.__init__)
    attributes = ("self.loop", "self.connections", "self.transport", "self.flow", "self.pipeline", "self.scope")
    for attribute in (*attributes, "self.timeout_keep_alive_task", "self.timeout_keep_alive"):
        if attribute not in inspect.getsource(HttpToolsProtocol):
            broken.append(f"HttpToolsProtocol no longer sets {attribute}")
    if "server_state.connections" not in init:
        broken.append("HttpToolsProtocol.connections is no longer the server's set of connections")
    exit_params = list(inspect.signature(uvicorn.Server.handle_exit).parameters)
    if exit_params != ["self", "sig", "frame"]:
        broken.append(f"uvicorn.Server.handle_exit takes {exit_params}, not (self, sig, frame)")
    if "should_exit" not in inspect.getsource(uvicorn.Server.main_loop):
        broken.append("uvicorn.Server.main_loop no longer watches should_exit")
    return broken
