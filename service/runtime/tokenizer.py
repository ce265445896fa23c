"""The model's fast tokenizer (HF `tokenizers`, Rust; it releases the GIL while encoding)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from service.errors import InvalidInput


class TextEncoder:
    """Turns texts into token-id arrays, truncated to the model's max length or refused."""

    def __init__(self, tokenizer_file: Path, max_length: int) -> None:
        self.max_length = max_length
        self._full = Tokenizer.from_file(str(tokenizer_file))
        self._full.no_padding()
        self._full.no_truncation()
        self._truncating = Tokenizer.from_file(str(tokenizer_file))
        self._truncating.no_padding()
        self._truncating.enable_truncation(max_length)

    @property
    def vocab_size(self) -> int:
        return int(self._full.get_vocab_size(with_added_tokens=True))

    def encode(self, texts: Sequence[str], truncate: bool) -> list[np.ndarray]:
        """One int64 array per text. With truncate=False an over-long text is a 422 naming
        its index and token count, never silently cut."""
        tokenizer = self._truncating if truncate else self._full
        encodings = tokenizer.encode_batch(list(texts))
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        if not truncate:
            for index, row in enumerate(ids):
                if len(row) > self.max_length:
                    raise InvalidInput(
                        f"input {index} has {len(row)} tokens, over the model's max length of "
                        f"{self.max_length}; shorten it or pass truncate=true",
                        param=f"inputs[{index}]",
                    )
        return ids
