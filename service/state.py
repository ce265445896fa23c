"""What the running service knows of itself: its models, readiness, draining and stalls.

Attached to `app.state.bertserve`; the routes reach it through `api/deps.py`, the serving
layer takes it as an argument. Readiness and admission are decided in one place,
`unready_reason`, for the probe, the gauge and every request alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.backpressure import HeldConnections
from service.engine.cache import ResultCache
from service.engine.seam import ServedModel
from service.errors import InvalidInput, ModelNotFound, Unavailable
from service.kinds import ModelKind
from service.metrics import Metrics
from service.settings import Settings

# Which model kinds serve each task, in order of preference: the task registry's table
# (service/tasks/registry.py), handed in by the app.
Serves = Mapping[str, tuple[ModelKind, ...]]
log = logging.getLogger("bertserve")


# A request and a health probe or scrape beside it: still a quiet service.
QUIET_REQUESTS = 2


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    serves: Serves = field(default_factory=dict)
    models: dict[str, ServedModel] = field(default_factory=dict)
    # The model that answers a request naming none, by task (service/defaults.py); set with
    # the models, in the same step (serve).
    defaults: dict[ModelKind, str] = field(default_factory=dict)
    url: str | None = None  # where the server listens (service/server.py): the ready line says it
    ready: bool = False
    draining: bool = False
    inflight: int = 0  # requests inside the app, health probes included; drain waits on it
    connections: int = 0  # open client connections (service/uvicorn_adapter.py keeps it)
    api_keys: list[bytes] = field(default_factory=list)
    stalled: str | None = None  # why readiness is 503 while a batch hangs
    sick: str | None = None  # why readiness is 503 while a model's runs keep failing (engine/health.py)
    sick_since: float | None = None  # monotonic: liveness fails once it lasts BERTSERVE_SICK_GRACE_S
    # Why the engine process takes no work (front ends only: it died, restarts or is unready).
    engine_down: str | None = None
    load_error: str | None = None  # why the models could not be loaded (the server exits)
    drain_started: float = float("inf")  # monotonic time of SIGTERM
    cache: ResultCache | None = None  # model output rows by exact token ids (BERTSERVE_CACHE_BYTES)
    held: HeldConnections = field(init=False)  # connections refused with a fast 429, waiting for room
    tokenize_pool: ThreadPoolExecutor | None = None  # set by the lifespan; shared by every model
    reloading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one reload at a time
    # A SIGHUP's reload, replaced models waiting for their last request: cancelled at shutdown.
    reload_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # A front end's reload: the engine process reloads (service/engine/client.py), and answers
    # what changed, as service/reload.py's Changes; None where the models are in this process.
    forward_reload: Callable[[], Awaitable[dict[str, list[str]]]] | None = None
    # How long a replaced model is kept at least (service/reload.py): in the engine process,
    # until every front end has heard of the swap.
    retire_after_s: float = 0.0
    # A front end's /metrics: every process's, merged (service/frontend.py); None: this one's.
    gather_metrics: Callable[[], Awaitable[bytes]] | None = None

    def __post_init__(self) -> None:
        self.held = HeldConnections(self.room, lambda: self.unready_reason() is None, self.settings.request_timeout_s)

    def serving(self, task: str) -> list[ServedModel]:
        """Every model that could serve a request of `task`, named or not."""
        kinds = self.serves[task]
        return [m for m in self.models.values() if m.manifest.task in kinds]

    def serve(self, models: Mapping[str, ServedModel], defaults: dict[ModelKind, str]) -> None:
        """The models to serve and the defaults among them, replaced together: no request sees
        a default that is not (yet, or any more) served."""
        self.models = dict(models)
        self.defaults = defaults

    def is_default(self, model: ServedModel) -> bool:
        """Whether the model answers the requests of its task that name none."""
        return self.defaults.get(model.manifest.task) == model.name

    def quiet(self) -> bool:
        """Low load, as the fast lane needs it (service/engine/model.py): at most
        QUIET_REQUESTS requests in the app and no connection held after a fast 429. An empty
        queue alone is not enough: in a retry storm the queue drains for a moment between
        resumed connections, and spinning threads then took the cores the event loop needed
        for its refusals, which made the 429 tail several times longer
        (docs/design.md, "The fast lane")."""
        return self.inflight <= QUIET_REQUESTS and not self.held.count()

    def alone(self) -> bool:
        """Quiet, and at most one client connection open: when the fast lane may run a batch
        on the event loop itself (service/engine/inline.py). Requests that arrive while the
        loop runs one are not read, so they are not in `inflight` either: at concurrency 4
        they kept finding the app quiet and ran one by one on the loop, slower than both
        sessions in turn (docs/design.md, "Inline runs on the event loop"). Open connections
        are seen whatever the loop is doing."""
        return self.connections <= 1 and self.quiet()

    def room(self, task: str) -> int:
        """Free items in the queues of the models that could serve `task`."""
        return sum(m.room() for m in self.serving(task))

    def mark_ready(self) -> None:
        self.ready = True
        self._publish()

    def start_draining(self) -> None:
        if not self.draining:
            self.draining = True
            self.drain_started = time.monotonic()
        self._publish()

    def fail_loading(self, reason: str) -> None:
        self.load_error = reason
        self._publish()

    def unready_reason(self, entered_at: float | None = None) -> str | None:
        """Why the service does not take requests now, or None when it does: the one place
        that decides, for /health/ready, the ready gauge and the admission of every request.
        A request that entered the app before the drain began (`entered_at`, monotonic) was
        accepted: draining does not refuse it."""
        if self.draining and (entered_at is None or entered_at >= self.drain_started):
            return "the service is draining: retry on another replica"
        if self.load_error:
            return f"the models could not be loaded: {self.load_error}"
        if not self.ready:
            return "the service is starting: models are loading"
        if self.engine_down:
            return self.engine_down
        if self.stalled:
            return f"the runtime is stalled ({self.stalled}, over BERTSERVE_STALL_TIMEOUT_S)"
        if self.sick:
            return f"the runtime keeps failing ({self.sick})"
        return None

    def dead_reason(self, now: float) -> str | None:
        """Why liveness fails: a model sick for longer than BERTSERVE_SICK_GRACE_S. A restart
        is what is left to try (a CUDA context does not come back in the same process)."""
        if self.sick and self.sick_since is not None and now - self.sick_since >= self.settings.sick_grace_s:
            return f"sick for {now - self.sick_since:.0f}s ({self.sick}), over BERTSERVE_SICK_GRACE_S"
        return None

    def set_engine_down(self, reason: str | None) -> None:
        if reason != self.engine_down:
            if reason and self.ready:
                log.error("engine unavailable, readiness 503", extra={"reason": reason})
            elif self.engine_down and self.ready:
                log.warning("engine back, readiness restored")
            self.engine_down = reason
            self._publish()

    def admit(self, entered_at: float) -> None:
        reason = self.unready_reason(entered_at)
        if reason:
            raise Unavailable(reason)

    def _publish(self) -> None:
        self.metrics.ready.set(0 if self.unready_reason() else 1)

    def check_stalls(self, now: float) -> None:
        """Readiness turns 503 while any session's batch has run past the stall timeout, so a
        load balancer takes this replica out; it comes back when the batch returns. Each
        instance of a model is checked on its own: one stuck session is named even while the
        others keep serving (a hung run never gives its thread back, so the replica is not
        what it was)."""
        limit = self.settings.stall_timeout_s
        stalled = [stall for m in self.models.values() for stall in m.stalls(now, limit)]
        reason = ", ".join(f"{name}: batch running for {age:.1f}s" for name, age in stalled) or None
        if reason != self.stalled:
            if reason:
                log.error("runtime stalled, readiness 503", extra={"reason": reason})
            else:
                log.warning("runtime recovered, readiness restored")
            self.stalled = reason
            self._publish()
        self.check_health(now)

    def check_health(self, now: float) -> None:
        """Readiness turns 503 while a model's runs keep failing (service/engine/health.py),
        naming the model and the error."""
        sick = "; ".join(m.sick for m in self.models.values() if m.sick) or None
        if sick != self.sick:
            if sick:
                log.error("runtime failing, readiness 503", extra={"reason": sick})
                self.sick_since = self.sick_since or now
            else:
                log.warning("runtime runs again, readiness restored")
                self.sick_since = None
            self.sick = sick
            self._publish()

    def resolve(self, task: str, name: str | None) -> ServedModel:
        """The model named, or the default of the first kind in `serves[task]` that is served
        (rerank: a cross-encoder, else an embedding model): the one BERTSERVE_DEFAULT_MODELS or
        a manifest names, or the only model of its kind (service/defaults.py)."""
        kinds = self.serves[task]
        if name is not None:
            model = self.models.get(name)
            if model is None or model.manifest.task not in kinds:
                served = ", ".join(sorted(m.name for m in self.serving(task)))
                raise ModelNotFound(f"model {name!r} does not serve {task} (served: {served or 'none'})", "model")
            return model
        for kind in kinds:
            default = self.models.get(self.defaults.get(kind, ""))
            if default is not None and default.manifest.task == kind:
                return default
            of_kind = [m for m in self.models.values() if m.manifest.task == kind]
            if len(of_kind) == 1:
                return of_kind[0]
            if of_kind:
                names = ", ".join(sorted(m.name for m in of_kind))
                raise InvalidInput(
                    f"several {kind} models are served ({names}) and none is the default: name one in 'model', "
                    f"or choose the default with BERTSERVE_DEFAULT_MODELS={kind}=<name>",
                    "model",
                )
        raise ModelNotFound(f"no {task} model is served", param="model")

    def rerank_mode(self, model: ServedModel) -> str | None:
        """How a model serves /rerank: as a cross-encoder, by cosine when it is the embedding
        model /rerank falls back on, or not at all."""
        if model.manifest.task == "rerank":
            return "cross-encoder"
        cross_encoders = any(m.manifest.task == "rerank" for m in self.models.values())
        return "cosine" if model.manifest.task == "embed" and not cross_encoders else None

    def deadline(self, timeout_s: float | None) -> float:
        """Absolute loop time by which the request must be answered; the client may ask for less."""
        timeout = (
            self.settings.request_timeout_s if timeout_s is None else min(timeout_s, self.settings.request_timeout_s)
        )
        return asyncio.get_running_loop().time() + timeout


def watch_interval(stall_timeout_s: float) -> float:
    """Check a few times per stall timeout, but not busier than every 10 ms."""
    return min(0.5, max(0.01, stall_timeout_s / 4))


async def watch_stalls(state: AppState) -> None:
    interval = watch_interval(state.settings.stall_timeout_s)
    while True:
        state.check_stalls(time.monotonic())
        await asyncio.sleep(interval)
