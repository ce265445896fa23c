"""What the layers that handle one request tell each other about it: one typed object in the
ASGI scope's state, instead of loose string keys.

The protocol adapter (service/uvicorn_adapter.py) creates it when a request's headers are
complete, with its `Departure` (told when the connection ends), and marks a request that
waited its turn after a fast 429 (`resumed`); the middleware fills in the id, the entry time
and what the response says; the route's `Call` hangs off it (its timing for the headers
and traces, the models it uses until the answer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.tasks.common import Call

KEY = "bertserve"


class Departure:
    """The client's connection ended, as the server that holds it tells (the protocol adapter,
    service/uvicorn_adapter.py): a request waiting on its rows is told by a callback, so it
    needs no task of its own watching ASGI's receive channel for `http.disconnect`."""

    __slots__ = ("_then", "left")

    def __init__(self) -> None:
        self.left = False
        self._then: Callable[[], object] | None = None

    def happened(self) -> None:
        self.left = True
        then, self._then = self._then, None
        if then is not None:
            then()

    def on_leave(self, then: Callable[[], object] | None) -> None:
        """What to call when the client leaves (one at a time; None: nothing)."""
        self._then = then


@dataclass(slots=True)
class RequestContext:
    request_id: str = ""
    entered_at: float = 0.0  # monotonic: a request accepted before a drain is served
    # The route's path for metrics when the framework did not route the request (the fast 429,
    # the direct path); None: the framework's route says it.
    route_path: str | None = None
    # Room promised to this connection after a fast 429 (it waited its turn): ends once the
    # request is queued or answered.
    resumed: Callable[[], None] | None = None
    # Room reserved for the request by the middleware, ending likewise.
    release_room: Callable[[], None] | None = None
    # Set with a fast 429: the task whose queue the connection is held for.
    hold_for: str | None = None
    model: str = ""  # the model that served it, for metrics, the access log and traces
    call: Call | None = None
    # Set by the protocol adapter, which tells it when the connection ends; None under another
    # ASGI server (the route then watches `receive` for the disconnect).
    departure: Departure | None = None


def context_of(scope: Any) -> RequestContext:
    """The request's context, made on first use. `scope`: an ASGI scope (uvicorn's typed one
    or a plain dict)."""
    state = scope.setdefault("state", {})
    context: RequestContext | None = state.get(KEY)
    if context is None:
        context = state[KEY] = RequestContext()
    return context
