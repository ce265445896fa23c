import random
import re

import prometheus_client
import prometheus_client.metrics
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from service.metrics import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram


def _exposition(registry: CollectorRegistry) -> str:
    # The creation times differ between the two registries by construction.
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate_latest(registry).decode())


@pytest.mark.parametrize("created", [True, False])
@pytest.mark.parametrize("buckets", [LATENCY_BUCKETS, SIZE_BUCKETS])
def test_exposition_is_the_client_librarys(
    buckets: tuple[float, ...], created: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus_client.metrics, "_use_created", created)  # PROMETHEUS_DISABLE_CREATED_SERIES
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = Histogram("bertserve_x_seconds", "Something timed", ["model"], buckets=buckets, registry=ours)
    library = prometheus_client.Histogram(
        "bertserve_x_seconds", "Something timed", ["model"], buckets=buckets, registry=theirs
    )
    rng = random.Random(0)
    values = [*buckets, 0.0, -1.0, 1e9, *(rng.uniform(0, 2 * max(buckets)) for _ in range(500))]
    for model in ("a", "b"):
        for value in values[:: 1 if model == "a" else 3]:  # bounds themselves fall in their own bucket
            mine.labels(model).observe(value)
            library.labels(model).observe(value)
    assert _exposition(ours) == _exposition(theirs)
    assert f'bertserve_x_seconds_count{{model="a"}} {float(len(values))}' in _exposition(ours)
    assert ("_created{" in _exposition(ours)) is created


def test_labels_are_checked_and_a_child_is_kept() -> None:
    histogram = Histogram("bertserve_y", "y", ["route"], buckets=SIZE_BUCKETS, registry=CollectorRegistry())
    assert histogram.labels("/classify") is histogram.labels("/classify")
    with pytest.raises(ValueError, match="takes labels"):
        histogram.labels("/classify", "extra")


def test_a_second_histogram_of_the_same_name_is_refused() -> None:
    registry = CollectorRegistry()
    Histogram("bertserve_z", "z", ["model"], buckets=SIZE_BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Histogram("bertserve_z", "z", ["model"], buckets=SIZE_BUCKETS, registry=registry)
