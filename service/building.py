"""What the default-model build is still building, as `/health/ready` and `/models` report it.

`make run` serves each default model as soon as it is built (models/build.py --serve): the
service starts on the first, and the others join through a live reload as their builds
finish. Meanwhile the build keeps `<model repository>/.building.json`:
`{"<name>": {"task": "<task>", "state": "queued" | "building" | "failed: <reason>"}}`, and
`serve --model` keeps it while it exports checkpoints, with each export's `"stage"`. A
hidden file: no repository scan takes it for a model. Absent, or unreadable, is nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE = ".building.json"


def read(models: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads((models / FILE).read_bytes())
    except (OSError, ValueError):  # none (the common case), or caught mid-write by another writer
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(name): {
            "task": str(entry.get("task", "")),
            "state": str(entry.get("state", "")),
            **({"stage": str(entry["stage"])} if entry.get("stage") else {}),
        }
        for name, entry in data.items()
        if isinstance(entry, dict)
    }


def summary(entries: dict[str, dict[str, str]]) -> str:
    """`a (verify fp32), b (queued)`: what a starting service is waiting for."""
    return ", ".join(f"{name} ({entry.get('stage') or entry['state']})" for name, entry in sorted(entries.items()))


def write(models: Path, entries: dict[str, dict[str, str]]) -> None:
    """Replace the file at once (a reader never sees half of it); no entries removes it."""
    path = models / FILE
    if not entries:
        path.unlink(missing_ok=True)
        return
    partial = path.with_name(f"{FILE}.{os.getpid()}")
    partial.write_text(json.dumps(entries, indent=1, sort_keys=True))
    partial.replace(path)
