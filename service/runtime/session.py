"""One onnxruntime session: provider and thread choice, padding, and the run itself."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from service.runtime.lazy import lazy_module

if TYPE_CHECKING:
    import onnxruntime as ort
else:
    ort = lazy_module("onnxruntime")  # not loaded by a front end: service/runtime/lazy.py

from service.runtime.priority import on_lowered_thread

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class SessionError(Exception):
    pass


class InferenceError(Exception):
    """onnxruntime failed to run a batch. Its own exception types (unexported, all plain
    `Exception` subclasses) and its Python layer's ValueError come out as this one type, so
    callers catch it, not `Exception`."""


def resolve_providers(setting: str) -> list[str]:
    available = ort.get_available_providers()
    if setting == "cpu":
        return [CPU]
    if setting == "cuda":
        if CUDA not in available:
            raise SessionError("provider=cuda but onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
        return [CUDA, CPU]
    return [CUDA, CPU] if CUDA in available else [CPU]


Spinning = Literal["off", "on", "on+stop"]


def session_options(threads: int, spinning: Spinning) -> ort.SessionOptions:
    """The service's session options. The fast lane's session spins as "on+stop", the others
    not at all; plain "on" exists for the raw engine's batch-1 grid (loadtest/raw_engine.py),
    which compares the three."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Fatal only: every error surfaces as an exception that the service logs (as JSON), so
    # onnxruntime's own unstructured error lines on stderr would only repeat it.
    options.log_severity_level = 4
    # The CPU arena keeps every block it ever grew to: the peak of the largest batch stays
    # resident for good, several times the memory without it, at the same throughput
    # (docs/design.md, "Other measured choices").
    options.enable_cpu_mem_arena = False
    if spinning == "off":
        # Idle intra-op threads otherwise spin on the cores the event loop needs, and under
        # overload its 429s wait behind them (docs/design.md, "Other measured choices").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    else:
        # Threads that spin between the parallel parts of a run skip a wake-up each time, a
        # good part of a small batch's run (docs/design.md, "The fast lane").
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    if spinning == "on+stop":
        # Once the run returns they stop at once instead of spinning on into the event loop's time.
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


class OnnxSession:
    """Runs padded batches of token-id rows. Not async: the caller owns the thread."""

    def __init__(
        self,
        path: Path,
        *,
        output: str,
        pad_token_id: int,
        providers: list[str],
        threads: int,
        io_binding: bool | None = None,
        spinning: bool = False,
        nice: int = 0,
        initializers: Sequence[tuple[str, ort.OrtValue]] = (),
    ) -> None:
        options = session_options(threads, "on+stop" if spinning else "off")
        # Weights shared with the model's other sessions (service/runtime/shared_weights.py);
        # held here, since onnxruntime needs them for as long as the session lives.
        self.shared_weights = list(initializers)
        for name, value in self.shared_weights:
            options.add_initializer(name, value)
        try:
            # Its intra-op threads are created here, and inherit the creating thread's priority.
            self._session = on_lowered_thread(
                lambda: ort.InferenceSession(str(path), options, providers=providers), nice
            )
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            raise SessionError(f"{path.name} does not load: {str(exc).splitlines()[0]}") from exc
        self.provider = self._session.get_providers()[0]
        self.input_names = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if output not in outputs:
            raise SessionError(f"{path.name} has no output {output!r} (it has {outputs})")
        self.output = output
        self.output_names = outputs
        self.output_shape = next(o.shape for o in self._session.get_outputs() if o.name == output)
        self.pad_token_id = pad_token_id
        self.threads = threads
        self.io_binding = self.provider == CUDA if io_binding is None else io_binding
        self._device = "cuda" if self.provider == CUDA else "cpu"
        self._outputs: dict[int, ort.OrtValue] = {}  # batch rows -> output buffer on the device

    def close(self) -> None:
        """Free the session now, whatever still refers to this object (a model replaced by a
        reload). Running it afterwards is a bug, and fails as one."""
        self.__dict__.pop("_session", None)
        self._outputs.clear()
        self.shared_weights = []

    def pad(self, rows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Pad to the batch's longest row only; mask out the padding. A row is token ids
        (n,), or token ids and segment ids (2, n) for a text pair."""
        longest = max(r.shape[-1] for r in rows)
        ids = np.full((len(rows), longest), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        segments = np.zeros((len(rows), longest), dtype=np.int64)
        for i, row in enumerate(rows):
            width = row.shape[-1]
            if row.ndim == 2:
                ids[i, :width] = row[0]
                segments[i, :width] = row[1]
            else:
                ids[i, :width] = row
            mask[i, :width] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = segments
        return feeds

    def run(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        feeds = self.pad(rows)
        try:
            return self._run(feeds)
        except Exception as exc:  # a plain try on the hot path: no context manager to enter
            raise _inference_error(exc) from exc

    def run_outputs(self, rows: Sequence[np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
        """As `run`, but fetching the graph outputs `names` (an embedding graph's per-token
        output beside its pooled one), in that order. onnxruntime allocates them, whatever the
        provider: their shapes follow the batch's longest row, so no buffer is kept for them."""
        missing = [n for n in names if n not in self.output_names]
        if missing:
            raise SessionError(f"the graph has no output {missing[0]!r} (it has {self.output_names})")
        feeds = self.pad(rows)
        try:
            outs = self._session.run(list(names), feeds)
        except Exception as exc:
            raise _inference_error(exc) from exc
        return [np.asarray(out, dtype=np.float32) for out in outs]

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if not self.io_binding:
            return np.asarray(self._session.run([self.output], feeds)[0], dtype=np.float32)
        # IO binding: inputs copied to the device once, and the output written into a buffer
        # kept on the device per batch size (allocated on first use of that size, then
        # reused), with one copy back per run.
        binding = self._session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, self._device, 0))
        buffer = self.output_buffer(len(feeds["input_ids"]))
        if buffer is None:
            binding.bind_output(self.output, self._device)
        else:
            binding.bind_ortvalue_output(self.output, buffer)
        self._session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)

    def output_buffer(self, rows: int) -> ort.OrtValue | None:
        """The preallocated (rows, width) output for a batch of `rows`; None when the graph's
        output is not one fixed-width vector per row (then onnxruntime allocates)."""
        width = self.output_shape[-1] if len(self.output_shape) == 2 else None
        if not isinstance(width, int):
            return None
        buffer = self._outputs.get(rows)
        if buffer is None:
            buffer = ort.OrtValue.ortvalue_from_shape_and_type([rows, width], np.float32, self._device, 0)
            self._outputs[rows] = buffer
        return buffer


def _inference_error(exc: Exception) -> InferenceError:
    """The one place onnxruntime's run failures are mapped: its own, unexported exception
    types become InferenceError, with the first line of their message."""
    first = str(exc).strip().splitlines()
    return InferenceError(f"{type(exc).__name__}: {first[0] if first else 'no message'}")
