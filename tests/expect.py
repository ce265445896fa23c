"""What the tests expect of the machine they run on, derived from it rather than assumed:
the execution provider onnxruntime offers here, and the variants the service may then serve."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import onnxruntime as ort

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def provider() -> str:
    setting = os.environ.get("BERTSERVE_PROVIDER", "auto")
    return CUDA if setting != "cpu" and CUDA in ort.get_available_providers() else CPU


def variants(model_dir: Path) -> tuple[str, ...]:
    """The variants the service may serve for the model directory: the one asked for; under
    `auto` fp16 on CUDA when the model has it, and on the CPU int8 or fp32 by the CPU's
    instructions, when the model has both (service/runtime/variants.py)."""
    wanted = os.environ.get("BERTSERVE_VARIANT", "auto")
    if wanted != "auto":
        return (wanted,)
    exported = json.loads((model_dir / "manifest.json").read_text())["variants"]
    if provider() == CUDA:
        return ("fp16",) if "fp16" in exported else ("fp32",)
    return tuple(v for v in ("int8", "fp32") if v in exported)


def check_variant(listed: dict[str, Any], model_dir: Path) -> None:
    """A model as /models lists it: a variant it may serve, and the choice behind it, with the
    timings when int8 and fp32 were timed."""
    allowed = variants(model_dir)
    assert listed["variant"] in allowed, (listed["variant"], allowed)
    choice = listed["variant_choice"]
    timed = allowed == ("int8", "fp32")
    assert (choice["int8_ms"] is not None) == timed and (choice["fp32_ms"] is not None) == timed, choice
    if timed:
        assert choice["int8_ms"] > 0 and choice["fp32_ms"] > 0, choice
        assert choice["reason"].startswith("auto: "), choice
