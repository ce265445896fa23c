"""Every task the service serves, in one list: adding a task is a folder under service/tasks/
and one line here (docs/design.md, "Adding a task"). Everything else reads this list."""

from __future__ import annotations

from service.kinds import ModelKind
from service.tasks.classify import route as classify
from service.tasks.embed import route as embed
from service.tasks.entities import route as entities
from service.tasks.rerank import route as rerank
from service.tasks.spec import Route, Task
from service.tasks.tokenize import route as tokenize

TASKS: tuple[Task, ...] = (
    classify.TASK,
    embed.TASK,
    rerank.TASK,
    entities.TASK,
    tokenize.TASK,
)


def serves() -> dict[str, tuple[ModelKind, ...]]:
    """Which model kinds serve each task, in order of preference."""
    return {task.name: task.serves for task in TASKS}


def routes() -> dict[str, tuple[Task, Route]]:
    """Every model route by path, with its task."""
    return {route.path: (task, route) for task in TASKS for route in task.routes}


def queued_routes() -> dict[str, str]:
    """The routes whose items wait in a model's queue (the fast 429's), and their task."""
    return {path: task.name for path, (task, route) in routes().items() if route.queued}
