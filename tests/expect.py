"""What the tests expect of the machine they run on, derived from it rather than assumed:
the execution provider onnxruntime offers here, and the variant the service then prefers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnxruntime as ort

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def provider() -> str:
    setting = os.environ.get("BERTSERVE_PROVIDER", "auto")
    return CUDA if setting != "cpu" and CUDA in ort.get_available_providers() else CPU


def variant(model_dir: Path) -> str:
    """fp16 on CUDA, int8 on the CPU, when the model directory has it; fp32 otherwise."""
    wanted = os.environ.get("BERTSERVE_VARIANT", "auto")
    if wanted != "auto":
        return wanted
    variants = json.loads((model_dir / "manifest.json").read_text())["variants"]
    preferred = "fp16" if provider() == CUDA else "int8"
    return preferred if preferred in variants else "fp32"
