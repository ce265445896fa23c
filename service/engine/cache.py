"""The result cache: model output rows by model identity and exact token ids, bounded in bytes.

Keyed by the token ids the model is fed, not the text, so `truncate`, pair templates and
max-token cuts are covered by construction: two requests share an entry only when the graph
would see the same input. The identity (name, graph sha256, variant) is part of the key, so a
replaced model never answers from its predecessor's entries (and `drop` frees them).

Off by default (`BERTSERVE_CACHE_BYTES=0`): it pays only when inputs repeat (queries,
labels, recurring texts), and most embedding workloads (indexing documents) never repeat an
input, where it would cost a hash and memory per row for nothing. Rows are stored read-only
and handed out as they are, so a hit is bit-identical to the answer that filled it.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

# Per entry beyond the row and key bytes: the dict slot, the tuple, the array header.
ENTRY_OVERHEAD_BYTES = 200


class ResultCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._rows: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def key(identity: str, ids: np.ndarray) -> tuple[str, bytes]:
        # The shape goes in too: a pair's (2, n) ids and a text's (2n,) would share bytes.
        return identity, np.asarray(ids.shape, dtype=np.int64).tobytes() + ids.tobytes()

    def get(self, key: tuple[str, bytes]) -> np.ndarray | None:
        row = self._rows.get(key)
        if row is not None:
            self._rows.move_to_end(key)
        return row

    def put(self, key: tuple[str, bytes], row: np.ndarray) -> None:
        size = _size(key, row)
        if size > self.max_bytes or key in self._rows:
            return
        row = row.copy()
        row.flags.writeable = False
        self._rows[key] = row
        self.bytes += size
        while self.bytes > self.max_bytes:
            old_key, old_row = self._rows.popitem(last=False)
            self.bytes -= _size(old_key, old_row)

    def drop(self, identity: str) -> None:
        """Forget every row of one model (it was replaced or unloaded)."""
        for key in [k for k in self._rows if k[0] == identity]:
            self.bytes -= _size(key, self._rows.pop(key))


def _size(key: tuple[str, bytes], row: np.ndarray) -> int:
    return len(key[1]) + row.nbytes + ENTRY_OVERHEAD_BYTES
