"""What front ends and the engine process say to each other (service/engine/client.py,
service/engine_process.py), as msgpack via msgspec: typed, and a few microseconds a message.

Token ids and output rows travel as one buffer of raw bytes each, with their shapes, never
as lists of numbers: a batch of 32 rows of 256 int64 ids is one 64 KiB `bytes`, packed
without a Python object per number, and a front end gets numpy arrays back that view the
received buffer (np.frombuffer), with no copy.

Two channels:
- requests and their replies: each front end's own Unix stream connection to the engine,
  messages framed by their length (service/engine/channel.py), so the engine answers the
  front end that asked;
- the engine's state: a PUB socket the front ends subscribe to, a Status a few times a
  second and at once on a change (the models served, the room in each queue, health), so a
  front end refuses with a fast 429 or 503 from what it knows, without a round trip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np


class Rows(msgspec.Struct, array_like=True):
    """Arrays of one dtype, concatenated: the bytes, the dtype's name, each array's shape."""

    data: bytes
    dtype: str
    shapes: list[tuple[int, ...]]

    @classmethod
    def pack(cls, arrays: Sequence[np.ndarray]) -> Rows:
        dtype = arrays[0].dtype if arrays else np.dtype(np.int64)
        data = b"".join(np.ascontiguousarray(a, dtype=dtype).tobytes() for a in arrays)
        return cls(data, dtype.str, [tuple(a.shape) for a in arrays])

    def unpack(self) -> list[np.ndarray]:
        dtype = np.dtype(self.dtype)
        flat = np.frombuffer(self.data, dtype=dtype)
        out, at = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            out.append(flat[at : at + size].reshape(shape))
            at += size
        return out


class Run(msgspec.Struct, tag="run", array_like=True):
    """Queue these rows on the model of this identity; `timeout_s` is what is left of the
    request's deadline when it was sent (loop clocks differ between processes)."""

    id: int
    model: str
    identity: str
    ids: Rows
    timeout_s: float
    priority: str = "interactive"
    states: bool = False  # answer each row with its token states (ServedModel.submit)


class Cancel(msgspec.Struct, tag="cancel", array_like=True):
    """The client left: drop the request's items before they cost compute."""

    id: int


class Reload(msgspec.Struct, tag="reload", array_like=True):
    """Rescan the model repository (POST /admin/reload or SIGHUP on a front end)."""

    id: int


class Metrics(msgspec.Struct, tag="metrics", array_like=True):
    """The engine's metrics, in Prometheus' text format, for a front end's /metrics."""

    id: int


Request = Run | Cancel | Reload | Metrics


class BatchRun(msgspec.Struct, array_like=True):
    started: float  # perf_counter: CLOCK_MONOTONIC, the same clock in every process of the host
    seconds: float
    items: int


class Done(msgspec.Struct, tag="done", array_like=True):
    id: int
    rows: Rows
    queue_s: float
    runs: list[BatchRun]
    queued_at: float | None


class Failed(msgspec.Struct, tag="failed", array_like=True):
    """A ServiceError by its kind (service/errors.py), as the engine raised it."""

    id: int
    kind: str
    message: str
    param: str | None = None


class Reloaded(msgspec.Struct, tag="reloaded", array_like=True):
    id: int
    added: list[str]
    replaced: list[str]
    removed: list[str]
    unchanged: list[str]


class MetricsText(msgspec.Struct, tag="metrics_text", array_like=True):
    id: int
    text: str


Reply = Done | Failed | Reloaded | MetricsText


class ModelInfo(msgspec.Struct, array_like=True):
    """One model as the engine serves it: what a front end needs to tokenize for it, admit
    on it and describe it (GET /models)."""

    name: str
    identity: str
    directory: str
    loaded_at: float
    describe: dict[str, object]
    max_batch_size: int
    max_batch_tokens: int
    max_queue_items: int
    info_labels: tuple[str, str, str, str]


class Status(msgspec.Struct, tag="status", array_like=True):
    """The engine's state. `generation` changes with the model table (start-up, each reload);
    `room` and `queued` are per model name; `unready` is why the engine takes no work (None
    when it does)."""

    pid: int
    generation: int
    models: list[ModelInfo]
    defaults: dict[str, str]
    room: dict[str, int]
    queued: dict[str, int]
    unready: str | None
    sick: dict[str, str]  # model name -> why its runs keep failing (service/engine/health.py)


# How often the engine publishes its Status when nothing changes: the front ends' heartbeat.
HEARTBEAT_S = 0.1

encoder = msgspec.msgpack.Encoder()
requests = msgspec.msgpack.Decoder(Request)
replies = msgspec.msgpack.Decoder(Reply)
statuses = msgspec.msgpack.Decoder(Status)
