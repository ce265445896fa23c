"""The unit tier imports neither torch nor transformers, in any run: every module under
tests/unit (conftest files included) imported in a fresh interpreter. A unit-only run also
checks what its fixtures and tests loaded (tests/unit/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tests" / "unit"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_unit_modules_import_neither_torch_nor_transformers() -> None:
    modules = ["tests.conftest", *sorted(_module(p) for p in UNIT.rglob("*.py"))]
    assert "tests.unit.conftest" in modules and "tests.unit.runtime.test_priority" in modules
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *modules], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
