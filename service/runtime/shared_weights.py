"""One copy of a model's weights for all of its sessions.

Why: every onnxruntime session otherwise holds its own copy of each initializer, and the
service opens several per model on the CPU (its instances and the fast lane). Shared, they
take far less resident memory, with identical outputs and the same speed: the graph
optimisations onnxruntime applies at load still do their work (the figures:
docs/design.md, "Shared weights").

The graph is parsed once with `onnx` (no torch), and each tensor of at least `MIN_BYTES`
becomes an OrtValue over the parsed bytes, added to every session's options. The OrtValues
must outlive the sessions: each session keeps the list it was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.runtime.lazy import lazy_module

if TYPE_CHECKING:
    import onnxruntime as ort
else:
    ort = lazy_module("onnxruntime")  # not loaded by a front end: service/runtime/lazy.py

# Small tensors (biases, layer-norm weights) are not worth an entry each.
MIN_BYTES = 64 * 1024

SharedWeights = list[tuple[str, "ort.OrtValue"]]


def shared_initializers(path: Path) -> SharedWeights:
    """The graph's large initializers, by name, as OrtValues to hand to each session."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    shared: SharedWeights = []
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.nbytes >= MIN_BYTES:
            shared.append((tensor.name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))))
    return shared
