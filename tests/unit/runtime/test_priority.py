"""Inference threads at a lower priority: the thread a session is built on, the threads
onnxruntime starts from it, and the runtime's own thread; never the caller's."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from service.runtime.priority import lower_this_thread, on_lowered_thread

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")


def _nice(tid: int | None = None) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid or threading.get_native_id())


def _thread_nices() -> dict[int, int]:
    """Every live thread of this process and its nice value (field 19 of /proc/self/task/*/stat).

    A thread may end between the listing and the read (the thread a session is built on is
    joined just before; other tests leave pool threads winding down): it is left out."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = int(fields[16])
    return out


def test_work_and_the_threads_it_starts_run_lowered_and_the_caller_is_untouched() -> None:
    before = _nice()
    seen: dict[str, int] = {}

    def work() -> str:
        seen["work"] = _nice()
        child = threading.Thread(target=lambda: seen.__setitem__("child", _nice()))
        child.start()
        child.join()
        return "done"

    assert on_lowered_thread(work, 5) == "done"
    assert seen == {"work": before + 5, "child": before + 5}
    assert _nice() == before


def test_an_exception_comes_back_to_the_caller() -> None:
    def fail() -> None:
        raise ValueError("bad graph")

    with pytest.raises(ValueError, match="bad graph"):
        on_lowered_thread(fail, 5)


def test_zero_runs_on_the_calling_thread_and_lowering_caps_at_19() -> None:
    assert on_lowered_thread(threading.get_native_id, 0) == threading.get_native_id()
    seen: list[int] = []

    def lowered() -> None:
        lower_this_thread(50)
        seen.append(_nice())

    t = threading.Thread(target=lowered)
    t.start()
    t.join()
    assert seen == [19]


def test_onnxruntime_intra_op_threads_inherit_the_lowered_priority(tiny_graph: Path) -> None:
    import onnxruntime

    from service.runtime.session import CPU, OnnxSession

    onnxruntime.get_available_providers()  # loaded now (service/runtime/lazy.py): its own threads are not the pool's
    before = set(_thread_nices())
    session = OnnxSession(
        tiny_graph,
        output="sentence_embedding",
        pad_token_id=0,
        providers=[CPU],
        threads=3,
        nice=7,
    )
    started = {tid: nice for tid, nice in _thread_nices().items() if tid not in before}
    assert len(started) >= 2, started  # onnxruntime's pool: threads - 1 of them
    assert set(started.values()) == {_nice() + 7}
    assert session.provider == CPU
