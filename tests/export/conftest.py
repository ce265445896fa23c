"""The export tier: tests that build, export or fine-tune models with torch and
transformers (the `export` extra). Every test collected here carries the `export` marker,
so `-m export` / `-m "not export"` select the tier wherever the run starts."""

from __future__ import annotations

from pathlib import Path

import pytest

EXPORT = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).resolve().is_relative_to(EXPORT):
            item.add_marker(pytest.mark.export)
