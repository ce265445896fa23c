"""The engine seam: what the rest of the service may ask of a served model.

Two implementations:
- `LocalModel` (service/engine/model.py): the model in this process, its sessions, batcher
  and cache; what a single-process service and the engine process serve;
- `RemoteModel` (service/engine/client.py): a front end's handle on a model served by the
  engine process: it tokenizes here and sends the token ids over IPC.

The routes, the tasks and the application state see this protocol and nothing else, so a
request's path is the same in both; nothing outside service/engine/ reaches a batcher or a
session (tests/unit/test_layout.py holds it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from service.batching import INTERACTIVE, Priority, Ticket
from service.manifest import Manifest
from service.runtime.tokenizer import Encoded, TextEncoder


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int
    max_batch_tokens: int
    max_queue_items: int


class ServedModel(Protocol):
    name: str
    manifest: Manifest
    identity: str  # what the cache keys on: a replaced graph or another variant never shares rows
    loaded_at: float
    # Requests admitted on this model and not yet answered: a model replaced by a reload is
    # freed only once they are done (service/reload.py).
    users: int

    @property
    def encoder(self) -> TextEncoder: ...

    @property
    def queued(self) -> int: ...

    @property
    def sick(self) -> str | None:
        """Why runs on this model keep failing (service/engine/health.py), or None."""
        ...

    @property
    def info_labels(self) -> tuple[str, str, str, str]: ...

    async def tokenize(
        self, items: Sequence[str] | Sequence[tuple[str, str]], truncate: bool, max_second_tokens: int | None = None
    ) -> Encoded: ...

    async def run_now(
        self, ids: Sequence[np.ndarray], deadline: float, ticket: Ticket | None
    ) -> list[np.ndarray] | None: ...

    def submit(
        self,
        ids: Sequence[np.ndarray],
        deadline: float,
        ticket: Ticket | None = None,
        priority: Priority = INTERACTIVE,
        states: bool = False,
    ) -> Awaitable[list[np.ndarray]]:
        """One output row per input; with `states` (a model whose manifest has a
        `token_output`), per input an array of (1 + tokens, hidden): the graph's pooled row,
        then its tokens' states (late chunking)."""
        ...

    def check_admission(self, items: int, param: str, priority: Priority = INTERACTIVE) -> None: ...

    def room(self, priority: Priority = INTERACTIVE) -> int: ...

    def full(self, priority: Priority = INTERACTIVE) -> bool: ...

    def count_refusal(self, priority: Priority = INTERACTIVE) -> None: ...

    def idle(self) -> bool: ...

    def limits(self) -> BatchLimits: ...

    def stalls(self, now: float, limit_s: float) -> list[tuple[str, float]]: ...

    def describe(self) -> dict[str, Any]:
        """How it runs, for GET /models: variant, provider, instances, threads, fast lane."""
        ...
