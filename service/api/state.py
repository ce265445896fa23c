"""What the routes need from the running service, attached to `app.state.bertserve`."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from starlette.requests import Request

from service.errors import InvalidInput, ModelNotFound, Unavailable
from service.metrics import Metrics
from service.pipeline import ModelPipeline
from service.settings import Settings

TIMEOUT_HEADER = "x-request-timeout"
log = logging.getLogger("bertserve")


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    pipelines: dict[str, ModelPipeline] = field(default_factory=dict)
    ready: bool = False
    draining: bool = False
    inflight: int = 0  # requests inside the app, health probes included; drain waits on it
    api_keys: list[bytes] = field(default_factory=list)
    stalled: str | None = None  # why readiness is 503 while a batch hangs

    def set_ready(self, ready: bool) -> None:
        self.ready = ready
        self._publish()

    def start_draining(self) -> None:
        self.draining = True
        self._publish()

    def unready_reason(self) -> str | None:
        """Why /health/ready answers 503, or None when it answers 200: the one place that
        decides readiness, for the route and the gauge alike."""
        if self.draining:
            return "draining"
        if not self.ready:
            return "starting"
        if self.stalled:
            return f"runtime stalled ({self.stalled})"
        return None

    def _publish(self) -> None:
        self.metrics.ready.set(0 if self.unready_reason() else 1)

    def check_stalls(self, now: float) -> None:
        """Readiness turns 503 while any model's batch has run past the stall timeout, so a
        load balancer takes this replica out; it comes back when the batch returns."""
        limit = self.settings.stall_timeout_s
        stalled = [
            (p.name, now - p.batcher.busy_since)
            for p in self.pipelines.values()
            if p.batcher.busy_since is not None and now - p.batcher.busy_since > limit
        ]
        reason = ", ".join(f"{name}: batch running for {age:.0f}s" for name, age in stalled) or None
        if reason != self.stalled:
            if reason:
                log.error("runtime stalled, readiness 503", extra={"reason": reason})
            else:
                log.warning("runtime recovered, readiness restored")
            self.stalled = reason
            self._publish()

    def admit(self) -> None:
        if self.draining:
            raise Unavailable("the service is draining: retry on another replica")
        if not self.ready:
            raise Unavailable("the service is starting: models are not loaded yet")

    def resolve(self, task: str, name: str | None) -> ModelPipeline:
        if name is None:
            of_task = [p for p in self.pipelines.values() if p.manifest.task == task]
            if len(of_task) == 1:
                return of_task[0]
            if not of_task:
                raise ModelNotFound(f"no {task} model is served", param="model")
            names = ", ".join(sorted(p.name for p in of_task))
            raise InvalidInput(f"several {task} models are served ({names}): name one in 'model'", param="model")
        pipeline = self.pipelines.get(name)
        if pipeline is None or pipeline.manifest.task != task:
            served = ", ".join(sorted(p.name for p in self.pipelines.values() if p.manifest.task == task)) or "none"
            raise ModelNotFound(f"model {name!r} does not serve {task} (served: {served})", param="model")
        return pipeline

    def deadline(self, request: Request) -> float:
        """Absolute loop time by which the request must be answered; a header may lower it."""
        timeout = self.settings.request_timeout_s
        raw = request.headers.get(TIMEOUT_HEADER)
        if raw is not None:
            try:
                asked = float(raw)
            except ValueError:
                asked = float("nan")
            if not asked > 0:  # also refuses NaN
                raise InvalidInput(f"{TIMEOUT_HEADER} must be a positive number of seconds", param=TIMEOUT_HEADER)
            timeout = min(timeout, asked)
        return asyncio.get_running_loop().time() + timeout


async def watch_stalls(state: AppState, interval_s: float = 0.5) -> None:
    while True:
        state.check_stalls(time.monotonic())
        await asyncio.sleep(interval_s)
