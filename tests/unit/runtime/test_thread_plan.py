"""How many sessions a model gets, how many threads each, and whether a fast lane is added."""

from __future__ import annotations

import pytest

from service.runtime.loader import MAX_DEFAULT_INSTANCES, ThreadPlan, thread_plan
from service.settings import Settings


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [
        (1, ThreadPlan(1, 1, False)),  # one CPU: nothing to spin, no fast lane
        (2, ThreadPlan(2, 1, True, 2)),  # the fast lane runs alone: both CPUs
        (4, ThreadPlan(4, 1, True, 4)),
        (8, ThreadPlan(4, 2, True, 8)),
        (16, ThreadPlan(4, 4, True, 16)),
        (6, ThreadPlan(4, 1, True, 6)),
    ],
)
def test_the_default_follows_the_cpus(cpus: int, expected: ThreadPlan) -> None:
    assert MAX_DEFAULT_INSTANCES == 4
    assert thread_plan(Settings(), cpus, on_cuda=False) == expected


def test_instances_asked_for_split_the_cpus() -> None:
    assert thread_plan(Settings(instances=1), 2, on_cuda=False) == ThreadPlan(1, 2, True, 2)
    assert thread_plan(Settings(instances=3), 8, on_cuda=False) == ThreadPlan(3, 2, True, 8)
    # More instances than CPUs: one thread each, not zero.
    assert thread_plan(Settings(instances=4), 2, on_cuda=False) == ThreadPlan(4, 1, True, 2)


def test_explicit_threads_win() -> None:
    assert thread_plan(Settings(instances=2, intra_op_threads=3), 2, on_cuda=False) == ThreadPlan(2, 3, True, 3)
    # One thread asked for: the fast lane too, so there is nothing to spin.
    assert thread_plan(Settings(intra_op_threads=1), 2, on_cuda=False) == ThreadPlan(2, 1, False)
    # Threads given, instances not (docker-compose.yml, the Kubernetes manifest): as many
    # instances as those threads fill the CPUs, never more threads than CPUs.
    assert thread_plan(Settings(intra_op_threads=2), 2, on_cuda=False) == ThreadPlan(1, 2, True, 2)
    assert thread_plan(Settings(intra_op_threads=2), 8, on_cuda=False) == ThreadPlan(4, 2, True, 2)
    assert thread_plan(Settings(intra_op_threads=4), 2, on_cuda=False) == ThreadPlan(1, 4, True, 4)


def test_cuda_gets_one_session_and_no_fast_lane_unless_asked() -> None:
    assert thread_plan(Settings(), 16, on_cuda=True) == ThreadPlan(1, 16, False)
    assert thread_plan(Settings(instances=2), 16, on_cuda=True) == ThreadPlan(2, 8, False)


def test_no_fast_lane_when_off() -> None:
    assert not thread_plan(Settings(fast_lane=False), 4, on_cuda=False).fast_lane
