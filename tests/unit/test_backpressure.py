"""HeldConnections: who is held after a fast 429, who is resumed, in what order, and when."""

from __future__ import annotations

from service.backpressure import PROMISE_TICKS, RESUME_PER_TICK, HeldConnections
from tests.sync import until_async


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.paused = False
        self.closed = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def closing(self) -> bool:
        return self.closed

    def __repr__(self) -> str:
        return self.name


class World:
    def __init__(self) -> None:
        self.now = 100.0
        self.room = {"classify": 0, "embed": 0}
        self.ready = True
        self.held = HeldConnections(lambda task: self.room[task], lambda: self.ready, 30.0, clock=lambda: self.now)


async def test_held_connections_are_resumed_first_in_first_out_as_room_frees() -> None:
    w = World()
    conns = [Conn(f"c{i}") for i in range(4)]
    for c in conns:
        w.held.hold("classify", c)
    assert all(c.paused for c in conns) and w.held.waiting("classify")
    w.held.tick()
    assert all(c.paused for c in conns)  # no room: nobody
    w.room["classify"] = 2
    w.held.tick()
    assert [c.paused for c in conns] == [False, False, True, True]
    assert w.held.free_room("classify") == 0  # the room is promised to c0 and c1
    w.held.tick()
    assert conns[2].paused  # still promised: nobody else yet


async def test_a_promise_lasts_until_the_request_is_in_and_lapses_when_nothing_comes_soon() -> None:
    w = World()
    a, b, c = Conn("a"), Conn("b"), Conn("c")
    for conn in (a, b, c):
        w.held.hold("classify", conn)
    w.room["classify"] = 2
    w.held.tick()
    assert w.held.request_started(a)  # a sent its next request at once
    for _ in range(PROMISE_TICKS):  # b sent nothing: it backed off
        w.held.tick()
        assert c.paused
    w.held.tick()
    assert c.paused is False  # b's promise lapsed and went to c; a's stands
    assert w.held.free_room("classify") == 0
    assert not w.held.request_started(b)  # b's request, when it comes, is like anyone's
    w.held.release(a)  # a's request entered the app (and the queue: room is 1 less there)
    w.room["classify"] -= 1
    assert w.held.free_room("classify") == 0  # c's promise
    assert not w.held.request_started(a)  # a's next request is like anyone's


async def test_newcomers_wait_behind_held_connections_per_task() -> None:
    w = World()
    w.held.hold("classify", Conn("a"))
    assert w.held.waiting("classify") and not w.held.waiting("embed")
    w.room["embed"] = 5
    w.held.tick()
    assert w.held.free_room("embed") == 5


async def test_nobody_waits_past_the_hold_limit_or_once_the_service_is_unready() -> None:
    w = World()
    old, young = Conn("old"), Conn("young")
    w.held.hold("classify", old)
    w.now += 31
    w.held.hold("classify", young)
    w.held.tick()
    assert not old.paused and young.paused  # held past 30 s: resumed, to be answered
    w.ready = False  # draining or stalled: everyone gets the 503 now
    w.held.tick()
    assert not young.paused


async def test_closed_connections_are_forgotten() -> None:
    w = World()
    gone, alive = Conn("gone"), Conn("alive")
    w.held.hold("classify", gone)
    w.held.hold("classify", alive)
    gone.closed = True
    w.room["classify"] = 1
    w.held.tick()
    assert not alive.paused  # the room went to the live one
    w.held.release(alive)
    w.held.hold("classify", alive)  # a second 429 on the same connection: held again
    assert alive.paused and w.held.count() == 1


async def test_the_resumer_runs_by_itself_while_anyone_waits() -> None:
    held = HeldConnections(lambda task: 1, lambda: True, 30.0)
    conn = Conn("a")
    held.hold("classify", conn)
    await until_async(lambda: not conn.paused, what="the resumer to resume the connection")


async def test_one_pass_resumes_at_most_a_few_whatever_the_room() -> None:
    w = World()
    conns = [Conn(f"c{i}") for i in range(RESUME_PER_TICK * 2 + 3)]
    for c in conns:
        w.held.hold("classify", c)
    w.room["classify"] = len(conns)  # a batch freed room for all of them at once
    w.held.tick()
    assert sum(not c.paused for c in conns) == RESUME_PER_TICK
    assert [c.paused for c in conns[:RESUME_PER_TICK]] == [False] * RESUME_PER_TICK  # the oldest first
    w.held.tick()
    w.held.tick()
    assert not any(c.paused for c in conns)
