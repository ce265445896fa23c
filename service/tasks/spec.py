"""What a task declares: its HTTP routes and the kinds of model that serve it.

Every table elsewhere is read from these declarations through `registry.py`: the app's
routes and their OpenAPI schema (service/api/routes.py), the direct path
(service/api/direct.py), the fast 429 (service/api/overload.py), and which models a request
of the task may go to (AppState). A route's `handle` knows nothing of the framework: it takes
the validated body, the application state and the request's `Call`, and gives back a `Reply`
that the HTTP layer renders, the same way on every path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from service.kinds import ModelKind
from service.state import AppState
from service.tasks.common import Call


@dataclass(frozen=True, slots=True)
class Reply:
    """A route's answer: a JSON-serialisable body (numpy arrays allowed) and extra headers."""

    body: Any
    headers: Mapping[str, str] | None = None


Handle = Callable[[Any, AppState, Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """One POST route. `queued`: its items wait in a model's queue, so it gets the fast 429
    when every queue that could take them is full."""

    path: str
    body: type[BaseModel]
    response: Any  # the OpenAPI response model
    handle: Handle
    queued: bool = True


@dataclass(frozen=True)
class Task:
    """`serves`: the model kinds that can serve the task, in order of preference when the
    request names no model."""

    name: str
    serves: tuple[ModelKind, ...]
    routes: tuple[Route, ...]
