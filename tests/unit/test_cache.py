"""ResultCache: keyed by model identity and exact ids, bounded in bytes, least recently used out."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.cache import ENTRY_OVERHEAD_BYTES, ResultCache


def _ids(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def test_rows_come_back_read_only_and_equal_per_identity_and_ids() -> None:
    cache = ResultCache(1 << 20)
    row = np.arange(4, dtype=np.float32)
    cache.put(ResultCache.key("m/int8/abc", _ids(1, 2, 3)), row)
    got = cache.get(ResultCache.key("m/int8/abc", _ids(1, 2, 3)))
    assert got is not None and got.tobytes() == row.tobytes() and not got.flags.writeable
    row[0] = 99  # the cache kept its own copy
    assert cache.get(ResultCache.key("m/int8/abc", _ids(1, 2, 3)))[0] == 0  # type: ignore[index]
    assert cache.get(ResultCache.key("m/int8/other-sha", _ids(1, 2, 3))) is None
    assert cache.get(ResultCache.key("m/int8/abc", _ids(1, 2))) is None


def test_pair_ids_and_flat_ids_with_the_same_bytes_do_not_meet() -> None:
    cache = ResultCache(1 << 20)
    pair = np.asarray([[1, 2], [0, 1]], dtype=np.int64)
    cache.put(ResultCache.key("m", pair), np.ones(2, dtype=np.float32))
    assert cache.get(ResultCache.key("m", pair.reshape(-1))) is None


def test_bounded_in_bytes_least_recently_used_first_out() -> None:
    row = np.zeros(100, dtype=np.float32)  # 400 bytes
    entry = 400 + 8 + 8 + ENTRY_OVERHEAD_BYTES  # row, shape, one id, overhead
    cache = ResultCache(3 * entry)
    keys = [ResultCache.key("m", _ids(i)) for i in range(4)]
    for key in keys[:3]:
        cache.put(key, row)
    assert len(cache) == 3 and cache.bytes == 3 * entry
    cache.get(keys[0])  # used: the oldest is now keys[1]
    cache.put(keys[3], row)
    assert cache.get(keys[1]) is None
    assert all(cache.get(k) is not None for k in (keys[0], keys[2], keys[3]))
    assert cache.bytes == 3 * entry
    cache.put(ResultCache.key("m", _ids(9)), np.zeros(10_000, dtype=np.float32))  # larger than the cache
    assert len(cache) == 3


def test_drop_forgets_one_model_only() -> None:
    cache = ResultCache(1 << 20)
    cache.put(ResultCache.key("a", _ids(1)), np.ones(3, dtype=np.float32))
    cache.put(ResultCache.key("b", _ids(1)), np.ones(3, dtype=np.float32))
    before = cache.bytes
    cache.drop("a")
    assert cache.get(ResultCache.key("a", _ids(1))) is None
    assert cache.get(ResultCache.key("b", _ids(1))) is not None
    assert cache.bytes == pytest.approx(before / 2)
