from __future__ import annotations

import asyncio

from service.batching.policy import Item, select_batch


def items(*tokens: int) -> list[Item[str]]:
    loop = asyncio.new_event_loop()
    try:
        return [Item(f"p{i}", t, 1e9, float(i), loop.create_future()) for i, t in enumerate(tokens)]
    finally:
        loop.close()


def test_empty_queue_gives_empty_batch() -> None:
    assert select_batch([], 8, 100) == []


def test_oldest_always_rides_even_over_budget() -> None:
    pending = items(500, 10, 10)
    batch = select_batch(pending, 8, 100)
    assert batch == [pending[0]]


def test_size_budget_caps_items() -> None:
    pending = items(*([10] * 10))
    batch = select_batch(pending, 4, 10_000)
    assert [b.payload for b in batch] == ["p0", "p1", "p2", "p3"]


def test_token_budget_counts_rows_times_longest() -> None:
    pending = items(10, 10, 10, 40)
    # 3 rows x 10 = 30 fits in 35; adding the 40-token row would make 4 x 40 = 160.
    batch = select_batch(pending, 8, 35)
    assert [b.payload for b in batch] == ["p0", "p1", "p2"]


def test_fills_by_length_affinity_then_age() -> None:
    pending = items(20, 100, 21, 19, 22, 5)
    batch = select_batch(pending, 3, 10_000)
    # closest to 20: 21 (p2) and 19 (p3) tie on distance 1, age breaks the tie
    assert [b.payload for b in batch] == ["p0", "p2", "p3"]


def test_skips_a_long_item_but_keeps_filling_with_short_ones() -> None:
    pending = items(10, 12, 90, 11)
    batch = select_batch(pending, 8, 60)
    assert [b.payload for b in batch] == ["p0", "p3", "p1"]
    assert max(b.tokens for b in batch) * len(batch) <= 60


def test_fill_floor_keeps_padding_down() -> None:
    pending = items(10, 30, 11, 9, 12)
    # Without a floor the 30-token row joins: 5 rows x 30 = 150 padded for 72 real tokens.
    assert len(select_batch(pending, 8, 10_000)) == 5
    batch = select_batch(pending, 8, 10_000, min_fill=0.85)
    assert [b.payload for b in batch] == ["p0", "p2", "p3", "p4"]
    real = sum(b.tokens for b in batch)
    assert real / (len(batch) * max(b.tokens for b in batch)) >= 0.85


def test_fill_floor_never_blocks_the_oldest() -> None:
    pending = items(3, 100, 100)
    assert [b.payload for b in select_batch(pending, 8, 10_000, min_fill=1.0)] == ["p0"]


def test_only_the_window_of_oldest_items_is_considered() -> None:
    # p3 and p4 match the oldest exactly, but they are outside a window of 3.
    pending = items(20, 50, 50, 20, 20)
    assert [b.payload for b in select_batch(pending, 3, 10_000)] == ["p0", "p3", "p4"]
    assert [b.payload for b in select_batch(pending, 3, 10_000, window=3)] == ["p0", "p1", "p2"]


def test_oldest_rides_whatever_the_window() -> None:
    pending = items(30, 30, 30)
    for window in (-1, 0, 1):
        assert [b.payload for b in select_batch(pending, 8, 10_000, window=window)] == ["p0"]
    assert len(select_batch(pending, 8, 10_000, window=100)) == 3


def test_nothing_starves_under_a_steady_stream_of_better_matches() -> None:
    # Each round 4 new items arrive that match the oldest far better than an odd-length
    # item that is queued first; it must still ride within its position's number of batches.
    pending = items(10, 200, *([10] * 30))
    odd = pending[1]
    for round_ in range(3):
        batch = select_batch(pending, 4, 10_000, window=16)
        assert batch[0] is pending[0]
        pending = [it for it in pending if it not in batch] + items(*([10] * 4))
        if odd in batch:
            assert round_ == 1  # second in the queue: rides in the second batch, as the oldest
            return
    raise AssertionError("the odd item never rode")


def test_fill_items_take_only_the_room_the_others_leave() -> None:
    urgent = items(20, 80, 21)
    fill = items(20, 20, 20)
    for item in fill:
        item.payload = "f" + item.payload
    # The urgent ones first, each by affinity (80 is far, but still urgent), then the fill.
    batch = select_batch(urgent, 5, 10_000, fill=fill)
    assert [b.payload for b in batch] == ["p0", "p2", "p1", "fp0", "fp1"]
    # Within the token budget: 4 rows of 21 fit in 90, the 80-token row does not.
    batch = select_batch(urgent, 8, 90, fill=fill)
    assert [b.payload for b in batch] == ["p0", "p2", "fp0", "fp1"]
