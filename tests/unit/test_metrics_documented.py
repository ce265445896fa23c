"""The metrics table of docs/operations.md ("Metrics and logs") lists every metric the service
registers (service/metrics.py), under its exposed name, with its type and its labels; and no
metric that is not registered."""

from __future__ import annotations

import re
from pathlib import Path

from service.metrics import Metrics

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _table() -> dict[str, tuple[str, list[str]]]:
    """name -> (type, label names), from the rows of the table."""
    rows = {}
    for line in OPERATIONS.read_text().splitlines():
        if not line.startswith("| `bertserve_"):
            continue
        name, kind, labels = (cell.strip() for cell in line.strip("|").split("|")[:3])
        names = re.split(r"[(;]", labels, maxsplit=1)[0]
        rows[name.strip("`")] = (kind.split()[0], [n.strip() for n in names.split(",") if n.strip()])
    return rows


def _registered() -> dict[str, tuple[str, list[str]]]:
    metrics = Metrics()
    labels = {c._name: list(c._labelnames) for c in vars(metrics).values() if hasattr(c, "_labelnames")}
    out = {}
    for family in metrics.registry.collect():
        exposed = f"{family.name}_total" if family.type == "counter" else family.name
        out[exposed] = (family.type, labels[family.name])
    return out


def test_every_registered_metric_is_in_the_table_with_its_type_and_labels() -> None:
    table, registered = _table(), _registered()
    assert "bertserve_batch_failures_total" in registered
    missing = sorted(set(registered) - set(table))
    assert missing == [], f"not in docs/operations.md's metrics table: {missing}"
    for name, (kind, labels) in registered.items():
        assert table[name] == (kind, labels), name


def test_the_table_names_no_metric_that_is_not_registered() -> None:
    ghosts = sorted(set(_table()) - set(_registered()))
    assert ghosts == [], f"in the metrics table, not registered: {ghosts}"
