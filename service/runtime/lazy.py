"""Modules loaded on first use, not on import.

onnxruntime (and onnx) cost a process about 30 MB and 0.3 s before it has run anything. A
front-end process (service/frontend.py) imports the same code as the engine but never runs
a session, so it never pays for them; the engine and a single process load them with the
first model."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """`name` as a module object that imports itself on its first attribute access."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
