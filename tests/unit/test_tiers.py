"""The tiers stay apart. The unit tier imports neither torch nor transformers, in any run:
every module under tests/unit (conftest files included) imported in a fresh interpreter; a
unit-only run also checks what its fixtures and tests loaded (tests/unit/conftest.py).
Nothing under tests/ imports loadtest/: the load tools' own smoke tests live in
loadtest/tests (`make bench-smoke`)."""

from __future__ import annotations

import ast
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


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_under_tests_imports_loadtest() -> None:
    files = list((ROOT / "tests").rglob("*.py"))
    assert ROOT / "tests" / "e2e" / "procs.py" in files
    importing = sorted(
        str(p.relative_to(ROOT)) for p in files if any(n.split(".")[0] == "loadtest" for n in _imported(p))
    )
    assert importing == []
