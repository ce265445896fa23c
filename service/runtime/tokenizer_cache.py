"""One tokenizer object per (vocabulary, role, max length) in the process, shared by every
model that has it.

A loaded WordPiece tokenizer is 6-9 MB of Rust structures, and a model holds three (whole,
truncating, pairs truncating their second text): 20 MB a model. Fine-tuned models of one
base share its tokenizer.json but for the `truncation` and `padding` a checkpoint saved,
which the service sets itself; keyed on the rest of the file, the three default models
share one set. A front-end process holds nothing else of a model
(docs/design.md, "Front ends and the engine"). Weakly held: a model removed by a reload
frees its tokenizers.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from tokenizers import Tokenizer

# Set by the service on each use; what a saved checkpoint says of them is not part of the key.
CONFIGURED = ("truncation", "padding")


class _Held:
    __slots__ = ("__weakref__", "tokenizer")

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer


_shared: weakref.WeakValueDictionary[tuple[str, str], _Held] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def load_shared(path: Path, role: str, configure: Callable[[Tokenizer], None]) -> tuple[Tokenizer, object]:
    """The tokenizer of `path` configured for `role` (a name for what `configure` does: the
    same role must configure the same way), and a handle to keep while it is used."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for setting in CONFIGURED:
        data.pop(setting, None)
    text = json.dumps(data, sort_keys=True)
    key = (hashlib.sha256(text.encode()).hexdigest(), role)
    with _lock:
        held = _shared.get(key)
        if held is None:
            tokenizer = Tokenizer.from_str(text)
            configure(tokenizer)
            held = _shared[key] = _Held(tokenizer)
    return held.tokenizer, held
