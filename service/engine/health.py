"""Whether a model's runs keep failing: a sick engine says so on readiness.

A model is sick when its runtime raised an error of the device class (CUDA, cuDNN, cuBLAS,
out of memory: the device or its context is gone, and every later run would fail too), or
when FAILURES_SICK runs in a row failed with no success between (a poison input fails
alone, once per retry, and the next good batch clears the count). Readiness then turns 503
naming the model and the error, so a load balancer stops sending work; once it has been
sick for BERTSERVE_SICK_GRACE_S, liveness fails too and an orchestrator restarts the
process (docs/operations.md, "Health").
"""

from __future__ import annotations

import re
import time

# Consecutive failed runs (a batch, then each of its items alone) before the model is sick:
# a poison input in a batch of 8 fails 1 + 1 runs; this many is a runtime failing everything.
FAILURES_SICK = 16
DEVICE_ERROR = re.compile(r"\bCUDA\b|cudnn|cublas|out of memory|failed to allocate|device-side|\bOOM\b", re.IGNORECASE)


class RunHealth:
    def __init__(self, model: str) -> None:
        self._model = model
        self._failures = 0
        self.sick: str | None = None
        self.sick_since: float | None = None  # monotonic

    def ran(self) -> None:
        self._failures = 0
        if self.sick is not None and not self._device:
            self.sick, self.sick_since = None, None

    def failed(self, exc: BaseException) -> None:
        self._failures += 1
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        if DEVICE_ERROR.search(reason):
            self._mark(f"model {self._model!r}: device error: {reason}", device=True)
        elif self._failures >= FAILURES_SICK:
            self._mark(f"model {self._model!r}: {self._failures} runs in a row failed: {reason}", device=False)

    def _mark(self, reason: str, device: bool) -> None:
        if self.sick is None:
            self.sick_since = time.monotonic()
        self.sick, self._device = reason, device

    _device = False
