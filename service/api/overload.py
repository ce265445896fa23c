"""The fast 429: a request to a model route is refused before its body is read when every
model that could serve it has a full queue.

Why: under a storm, refusals come by the thousand per second and share the CPUs with the
runtime. On the full path a refusal paid for the body, routing, validation and the
dependencies before `check_room` said no, several times the cost of the answer itself. Here
it costs a dict lookup and a length check. Whatever the body holds, no model could take it,
so the answer is the one the full path would give; the only difference is that under
overload a malformed body gets the 429 rather than its 422.

What still takes the full path: a service that is not ready or is draining (its 503 is
decided there), a request without a valid API key (its 401), a cross-origin request when
CORS is on (its answer needs the CORS headers), any route whose models still have room, and
a request on a connection that was held after a 429 and resumed with room promised to it.
The connection of a fast 429 is then held (see `service/backpressure.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.api.deps import PRIORITY_HEADER, needs_full_path
from service.errors import Overloaded
from service.priorities import INTERACTIVE, parse_priority
from service.state import AppState
from service.tasks.registry import queued_routes

# The routes whose requests wait in a model's queue, and the task each serves.
QUEUED_ROUTES = queued_routes()


@dataclass(frozen=True)
class FastPath:
    """What the middleware does with a request before reading its body."""

    task: str
    refused: Overloaded | None = None  # answer this at once, then hold the connection
    release: Callable[[], None] | None = None  # let in with room reserved: call once it is in the app


def fast_path(state: AppState, method: str, path: str, headers: dict[bytes, bytes]) -> FastPath | None:
    """The decision for a model route's request, or None when the full path decides alone."""
    task = QUEUED_ROUTES.get(path) if method == "POST" else None
    if task is None or state.unready_reason() is not None or needs_full_path(state, headers):
        return None
    models = state.serving(task)
    if not models:
        return None
    held = state.held
    if not held.waiting(task):
        if not all(m.full() for m in models):
            return None
    elif held.free_room(task) > 0:
        # Room beyond what was promised to the held connections: reserved until the request
        # is in the app, so the resumer does not promise it again meanwhile.
        return FastPath(task, release=held.reserve(task))
    # Counted at the header's level when it names one (the body is not read): a full queue
    # refuses both levels alike.
    level = parse_priority(headers.get(PRIORITY_HEADER, b"").decode("latin-1").strip().lower()) or INTERACTIVE
    for model in models:
        model.count_refusal(level)
    return FastPath(task, refused=Overloaded(f"every {task} queue is full (BERTSERVE_MAX_QUEUE_ITEMS): retry later"))
