"""The fast 429: a request to a model route is refused before its body is read when every
model that could serve it has a full queue.

Why: under a storm, refusals come by the thousand per second and share two cores with the
runtime. On the full path a refusal paid for the body, routing, validation and the
dependencies before `check_room` said no, several times the cost of the answer itself. Here
it costs a dict lookup and a length check. Whatever the body holds, no model could take it,
so the answer is the one the full path would give; the only difference is that under
overload a malformed body gets the 429 rather than its 422.

What still takes the full path: a service that is not ready or is draining (its 503 is
decided there), a request without a valid API key (its 401), a cross-origin request when
CORS is on (its answer needs the CORS headers), and any route whose models still have room.
"""

from __future__ import annotations

from service.api.deps import key_matches
from service.errors import Overloaded
from service.state import SERVES, AppState

# The routes whose requests wait in a model's queue, and the task each serves.
QUEUED_ROUTES = {
    "/classify": "classify",
    "/embed": "embed",
    "/v1/embeddings": "embed",
    "/rerank": "rerank",
    "/v2/rerank": "rerank",
    "/classify/tokens": "tokens",
    "/tokens": "tokens",
}


def refusal(state: AppState, method: str, path: str, headers: dict[bytes, bytes]) -> Overloaded | None:
    """The 429 to answer at once, or None for the full path."""
    if method != "POST" or (state.settings.cors_origins and b"origin" in headers):
        return None
    task = QUEUED_ROUTES.get(path)
    if task is None or state.unready_reason() is not None:
        return None
    if state.api_keys and not key_matches(state.api_keys, headers.get(b"authorization", b"").decode("latin-1")):
        return None
    kinds = SERVES[task]
    models = [m for m in state.models.values() if m.manifest.task in kinds]
    if not models or not all(m.batcher.full() for m in models):
        return None
    for model in models:
        model.batcher.count_refusal()
    return Overloaded(f"every {task} queue is full: retry later")
