"""A TensorFlow classifier (tf_model.h5, as TF `save_pretrained` wrote it) exported with the
`bertserve export` command, served by `bertserve serve` over real HTTP, and its raw logits
checked against the ones TensorFlow computed (tests/fixtures/tf/tf_outputs.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.procs import REPO, Server

pytestmark = pytest.mark.e2e

FIXTURES = REPO / "tests" / "fixtures" / "tf"


def test_served_logits_are_tensorflows(tmp_path: Path) -> None:
    spec = json.loads((FIXTURES / "tf_outputs.json").read_text())["fixtures"]["bert-classifier"]
    repo = tmp_path / "models"
    command = ["export", str(FIXTURES / "bert-classifier"), str(repo / "tf-bert"), "--task", "classify"]
    export = subprocess.run(
        [sys.executable, "-m", "service", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr
    assert "export: reading the TensorFlow weights in tf_model.h5" in export.stderr

    texts = [o["text"] for o in spec["outputs"]]
    with Server(repo) as server:
        r = httpx.post(f"{server.url}/classify", json={"inputs": texts, "function": "none"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tf-bert"
    by_label = [{p["label"]: p["score"] for p in row} for row in r.json()["predictions"]]
    served = np.asarray([[row[label] for label in spec["labels"]] for row in by_label])
    expected = np.asarray([o["logits"] for o in spec["outputs"]])
    assert float(np.abs(served - expected).max()) <= 1e-4
