"""The task registry is the one table of routes: each model route's path is written once
under service/, in its task's folder, and everything else reads it from the registry."""

from __future__ import annotations

import ast
from pathlib import Path

import service
from service.tasks.registry import TASKS

SERVICE = Path(service.__file__).parent
MODEL_ROUTES = ["/classify", "/embed", "/v1/embeddings", "/rerank", "/v2/rerank", "/classify/tokens", "/tokenize"]


def _literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_each_model_route_path_is_written_in_exactly_one_file() -> None:
    found: dict[str, list[Path]] = {route: [] for route in MODEL_ROUTES}
    for path in sorted(SERVICE.rglob("*.py")):
        literals = _literals(path)
        for route in MODEL_ROUTES:
            if route in literals:
                found[route].append(path.relative_to(SERVICE))
    assert {route: len(paths) for route, paths in found.items()} == dict.fromkeys(MODEL_ROUTES, 1), found
    for route, (path,) in found.items():
        assert path.parts[0] == "tasks" and path.name == "route.py", (route, path)


def test_the_registry_declares_every_model_route_once() -> None:
    declared = [route.path for task in TASKS for route in task.routes]
    assert len(declared) == len(set(declared))
    assert set(MODEL_ROUTES) <= set(declared)


def test_the_engine_is_reached_through_its_served_models_surface() -> None:
    """Outside service/engine/, nothing touches a served model's batcher: its queue, limits
    and health come through the served model's own methods, the seam a process boundary can
    stand behind."""
    reaching = []
    for path in sorted(SERVICE.rglob("*.py")):
        if path.relative_to(SERVICE).parts[0] in ("engine", "batching"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        reaching += [
            f"{path.relative_to(SERVICE)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "batcher"
        ]
    assert reaching == []
