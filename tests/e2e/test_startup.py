"""A model repository that is missing or broken stops start-up with one line and exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.procs import run_serve

pytestmark = pytest.mark.e2e


def _copy(tiny_repo: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo / "tiny-emb", repo / "tiny-emb")
    return repo / "tiny-emb"


def _assert_one_line_failure(models: Path, expected: str) -> None:
    proc = run_serve(models)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bertserve serve: error:") and expected in lines[0]


def test_missing_repository(tmp_path: Path) -> None:
    _assert_one_line_failure(tmp_path / "nowhere", "does not exist")


def test_checksum_mismatch(tiny_repo: Path, tmp_path: Path) -> None:
    model = _copy(tiny_repo, tmp_path)
    with (model / "model.onnx").open("r+b") as fh:
        fh.seek(-64, 2)
        fh.write(b"\0" * 64)
    _assert_one_line_failure(model.parent, "does not match its manifest checksum")


def test_truncated_graph(tiny_repo: Path, tmp_path: Path) -> None:
    model = _copy(tiny_repo, tmp_path)
    data = (model / "model.onnx").read_bytes()
    (model / "model.onnx").write_bytes(data[: len(data) // 2])
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"].pop("model.onnx")  # without a checksum, onnxruntime itself must refuse it
    (model / "manifest.json").write_text(json.dumps(manifest))
    _assert_one_line_failure(model.parent, "does not load")


def test_manifest_that_does_not_fit_the_graph(tiny_repo: Path, tmp_path: Path) -> None:
    model = _copy(tiny_repo, tmp_path)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["dimension"] = 384
    (model / "manifest.json").write_text(json.dumps(manifest))
    _assert_one_line_failure(model.parent, "does not match the manifest")


def test_invalid_manifest(tiny_repo: Path, tmp_path: Path) -> None:
    model = _copy(tiny_repo, tmp_path)
    (model / "manifest.json").write_text('{"name": "x"}')
    _assert_one_line_failure(model.parent, "invalid manifest")


def test_graph_that_does_not_fit_its_tokenizer(broken_repo: Path) -> None:
    _assert_one_line_failure(broken_repo, "does not accept token id 30521")
