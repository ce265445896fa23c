"""One Prometheus exposition out of several processes' (a front end's /metrics with
BERTSERVE_API_SERVERS over 1: every front end's counters and the engine's queue and batch
metrics, docs/operations.md, "Metrics and logs").

Samples with the same name and labels are summed: counters, histograms' buckets, counts and
sums, and the gauges that count things (requests in flight, queued items). A few are not
sums: the time a series was created is the earliest, readiness is the least ready process
(0 when any is not), and `bertserve_model_info` is 1 where any process serves the model.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

LEAST = {"bertserve_ready"}
GREATEST = {"bertserve_model_info"}

Key = tuple[str, tuple[tuple[str, str], ...]]


def merge(texts: Iterable[str]) -> str:
    headers: dict[str, tuple[str, str]] = {}  # family -> (type, help), in first-seen order
    samples: dict[str, dict[Key, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            headers.setdefault(family.name, (family.type, family.documentation))
            values = samples.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                values[key] = _combine(family.name, sample.name, values.get(key), sample.value)
    lines = []
    for name, (kind, documentation) in headers.items():
        lines.append(f"# HELP {name} {_escape_help(documentation)}")
        lines.append(f"# TYPE {name} {kind}")
        for (series, labels), value in samples[name].items():
            rendered = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            number = floatToGoString(value)  # type: ignore[no-untyped-call]
            lines.append(f"{series}{{{rendered}}} {number}" if rendered else f"{series} {number}")
    return "\n".join(lines) + "\n"


def _combine(family: str, sample: str, seen: float | None, value: float) -> float:
    if seen is None:
        return value
    if sample.endswith("_created") or family in LEAST:
        return min(seen, value)
    if family in GREATEST:
        return max(seen, value)
    return seen + value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
