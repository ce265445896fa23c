"""Inference threads run at a lower CPU priority than the event loop.

On a machine with as many busy onnxruntime threads as cores, the event loop's short jobs
(reading a request, answering a 429, writing a response) wait for a time slice behind them:
under a retry storm, 429s wait many times their own cost for a core (the figures:
docs/design.md, "Other measured choices"). With the runtime's threads niced, the scheduler
runs the loop as soon as it has work and gives the runtime everything else; when the loop
is idle, the runtime loses nothing.

Linux keeps a nice value per thread, and a new thread starts with its creator's: onnxruntime
creates its intra-op pool when a session is built, so the session is built on a thread whose
priority has been lowered first. Lowering needs no privilege; raising it back would, so the
loading thread itself is never touched. Elsewhere (or if refused) this does nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
MAX_NICE = 19


def lower_this_thread(nice: int) -> None:
    """Add `nice` to the calling thread's nice value (0: leave it)."""
    if nice <= 0:
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, current + nice))
    except (AttributeError, OSError):
        pass  # not a POSIX system, or not permitted: normal priority


def on_lowered_thread(work: Callable[[], T], nice: int) -> T:
    """`work()` run on a new thread of lowered priority, so that the threads it starts have
    that priority too; its result or exception comes back here."""
    if nice <= 0:
        return work()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        lower_this_thread(nice)
        try:
            outcome.append(work())
        except BaseException as exc:  # handed back to the caller, whatever it is
            failure.append(exc)

    thread = threading.Thread(target=target, name="runtime-start")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
