"""Connections refused with a fast 429 are held: not read again until their queue has room.

Why: a caller that resends the moment a 429 comes back (a retry loop without back-off, or
thousands of them) turns every refusal into the next request. Answered at once, each costs
little, but their number has no bound: under a storm the event loop spends its time on
refusals while the runtime waits for its next batch (docs/design.md, "Backpressure"). Held,
a refused connection costs nothing until there is room for it; its next request is then
read and, room being reserved for it, queued. The 429 itself is still answered at once, so a caller that backs off loses
nothing, and one that does not is slowed by TCP instead of by the service's cores.

The rules:
- Connections wait per task (the route's kind of queue), first refused, first resumed.
- Every few milliseconds, as many are resumed as the task's queues have room, less the room
  already promised to connections resumed before and not yet answered, and no more than
  `RESUME_PER_TICK` in one pass: their requests are then read together, in one pass of the
  event loop, and a batch's room resumed in one go keeps it from answering anything else for
  long enough to make the storm's 429 tail (docs/design.md, "Backpressure").
- A promise ends when the resumed connection's request is queued (or answered without),
  when it closes, or when no request has begun on it `PROMISE_TICKS` passes later (a caller
  that backed off: its next request, whenever it comes, is like anyone's).
- Nobody waits longer than `max_hold_s`; everybody is resumed when the service stops being
  ready (draining, a stall), so they get its 503 at once.
- While connections wait, a new request to the task is refused unless there is room beyond
  the promises: the ones that waited go first.

Pure bookkeeping over a small protocol, so it is tested without sockets; the uvicorn side is
`service/uvicorn_adapter.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

TICK_S = 0.002
# A resumed connection whose request has not begun this many passes later sent nothing (its
# caller backed off): a request already waiting in the socket is read within one pass of
# the event loop. Counted in passes, not seconds, so a busy loop does not lapse promises.
PROMISE_TICKS = 3
# Each resumed request costs the event loop its read, validation, tokenization and queueing:
# a pass resumes a few milliseconds' worth, short enough not to hold the loop, and at one
# pass per TICK_S plus that work the resumer still lets in more requests than the runtime
# serves (the figures: docs/design.md, "Backpressure").
RESUME_PER_TICK = 8


class Holdable(Protocol):
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def closing(self) -> bool: ...


class _Reservation:
    """Room held for a request let in while others wait (no connection of its own to hold)."""

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def closing(self) -> bool:
        return False


@dataclass
class _Task:
    waiting: deque[tuple[Holdable, float]] = field(default_factory=deque)
    # Resumed, request not in the app yet: the tick it was resumed at, and whether its
    # request has begun.
    promised: dict[Holdable, tuple[int, bool]] = field(default_factory=dict)


class HeldConnections:
    def __init__(
        self,
        room: Callable[[str], int],
        ready: Callable[[], bool],
        max_hold_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._room = room  # free queue items for a task now
        self._ready = ready
        self.max_hold_s = max_hold_s
        self._clock = clock
        self._tasks: dict[str, _Task] = {}
        self._of: dict[Holdable, str] = {}
        self._runner: asyncio.Task[None] | None = None
        self._ticks = 0

    # ---------------------------------------------------------------- the protocol's side

    def hold(self, task: str, conn: Holdable) -> None:
        """`conn` was just answered a fast 429: stop reading it until its turn."""
        self.release(conn)
        conn.pause()
        self._tasks.setdefault(task, _Task()).waiting.append((conn, self._clock()))
        self._of[conn] = task
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="held-connections")

    def request_started(self, conn: Holdable) -> bool:
        """A request's headers arrived on `conn`: whether room is promised to it. It then
        skips the fast 429 (it waited its turn already), and the promise stands until
        `release`: once the request is queued (`Call.queued`) or answered without."""
        task = self._of.get(conn)
        if task is None or conn not in self._tasks[task].promised:
            return False
        entry = self._tasks[task]
        entry.promised[conn] = (entry.promised[conn][0], True)
        return True

    def release(self, conn: Holdable) -> None:
        """`conn` was answered, or closed: whatever was held or promised for it ends."""
        task = self._of.pop(conn, None)
        if task is None:
            return
        entry = self._tasks[task]
        entry.promised.pop(conn, None)
        if any(c is conn for c, _ in entry.waiting):
            entry.waiting = deque((c, t) for c, t in entry.waiting if c is not conn)

    # ---------------------------------------------------------------- the middleware's side

    def reserve(self, task: str) -> Callable[[], None]:
        """Room for a request let in while others wait, until it is queued or answered: the
        call that ends the reservation."""
        token = _Reservation()
        self._tasks.setdefault(task, _Task()).promised[token] = (self._ticks, True)
        self._of[token] = task
        return partial(self.release, token)

    def waiting(self, task: str) -> bool:
        entry = self._tasks.get(task)
        return bool(entry and entry.waiting)

    def free_room(self, task: str) -> int:
        """Room in the task's queues that nobody has been promised."""
        entry = self._tasks.get(task)
        return self._room(task) - (len(entry.promised) if entry else 0)

    def count(self) -> int:
        return sum(len(e.waiting) for e in self._tasks.values())

    # ---------------------------------------------------------------- the resumer

    def tick(self) -> None:
        """One pass: lapse stale promises, resume whoever's turn it is."""
        self._ticks += 1
        now = self._clock()
        ready = self._ready()
        budget = RESUME_PER_TICK
        for task, entry in self._tasks.items():
            for conn, (since, started) in list(entry.promised.items()):
                if (not started and self._ticks - since > PROMISE_TICKS) or conn.closing():
                    del entry.promised[conn]  # resumed and silent (backed off), or gone
                    self._of.pop(conn, None)
            room = self.free_room(task) if ready else len(entry.waiting)
            while budget and entry.waiting and (room > 0 or now - entry.waiting[0][1] > self.max_hold_s):
                conn, _ = entry.waiting.popleft()
                if conn.closing():
                    self._of.pop(conn, None)
                    continue
                entry.promised[conn] = (self._ticks, False)
                room -= 1
                budget -= 1
                conn.resume()

    async def _run(self) -> None:
        while self.count() or any(e.promised for e in self._tasks.values()):
            await asyncio.sleep(TICK_S)
            self.tick()
