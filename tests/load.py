"""Steady load for the tests that change something under traffic (a rolling restart, a model
reload): closed-loop client threads until stopped, with every outcome counted, so a test can
say that no request failed."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import httpx

# One request of worker `worker`, its `n`th: the outcome to count (a status, or a word).
Send = Callable[[httpx.Client, int, int], int | str]


class SteadyLoad:
    def __init__(self, send: Send, threads: int = 4, base_url: str = "", timeout_s: float = 30) -> None:
        self.outcomes: Counter[int | str] = Counter()
        self._send = send
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, worker: int) -> None:
        with httpx.Client(base_url=self._base_url, timeout=self._timeout_s) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    outcome = self._send(client, worker, n)
                except httpx.HTTPError as exc:  # a refused or dropped connection counts too
                    outcome = type(exc).__name__
                with self._lock:
                    self.outcomes[outcome] += 1

    def total(self) -> int:
        with self._lock:
            return sum(self.outcomes.values())

    def __enter__(self) -> SteadyLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2 * self._timeout_s)
