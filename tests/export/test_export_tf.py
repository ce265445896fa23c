"""TensorFlow checkpoints (tf_model.h5) exported without TensorFlow, and what the service then
serves checked against the numbers TensorFlow computed (tests/fixtures/tf/tf_outputs.json, made
by make_fixtures.py there in an environment of its own)."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import h5py
import httpx
import numpy as np
import pytest

from service.app import create_app
from service.cli import main
from service.export.exporter import ExportOptions, export_checkpoint
from service.settings import Settings
from tests.integration.conftest import wait_ready

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
TF: dict[str, Any] = json.loads((FIXTURES / "tf_outputs.json").read_text())
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tf_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every fixture exported as a user would, each under its fixture's name."""
    repo = tmp_path_factory.mktemp("tf") / "models"
    for name, spec in TF["fixtures"].items():
        export_checkpoint(ExportOptions(FIXTURES / name, repo / name, spec["task"]), log=lambda _: None)
    return repo


@asynccontextmanager
async def serving(models: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(models=models, max_batch_size=8, max_batch_tokens=1024))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await wait_ready(client)
            yield client


async def served_outputs(client: httpx.AsyncClient, name: str, spec: dict[str, Any]) -> np.ndarray:
    """Raw logits in label order (`function: none`), or unnormalised embeddings."""
    texts = [o["text"] for o in spec["outputs"]]
    if spec["task"] == "embed":
        r = await client.post("/embed", json={"model": name, "inputs": texts, "normalize": False})
        assert r.status_code == 200, r.text
        return np.asarray(r.json()["embeddings"])
    r = await client.post("/classify", json={"model": name, "inputs": texts, "function": "none"})
    assert r.status_code == 200, r.text
    by_label = [{p["label"]: p["score"] for p in row} for row in r.json()["predictions"]]
    return np.asarray([[row[label] for label in spec["labels"]] for row in by_label])


@pytest.mark.parametrize("name", sorted(TF["fixtures"]))
async def test_served_outputs_match_tensorflow(tf_repo: Path, name: str) -> None:
    spec = TF["fixtures"][name]
    key = "logits" if spec["task"] == "classify" else "embedding"
    expected = np.asarray([o[key] for o in spec["outputs"]])
    async with serving(tf_repo) as client:
        r = await client.post("/tokenize", json={"model": name, "inputs": [o["text"] for o in spec["outputs"]]})
        assert [[t["id"] for t in row] for row in r.json()] == [o["input_ids"] for o in spec["outputs"]]
        got = await served_outputs(client, name, spec)
    assert got.shape == expected.shape
    diff = float(np.abs(got - expected).max())
    print(f"{name}: max abs diff against TensorFlow {diff:.3g}")
    assert diff <= TOLERANCE
    assert float(np.abs(expected).max()) > 0.5  # numbers of order 1, under which 1e-4 tells something


def rewrite(path: Path, stored_name: str, value: np.ndarray | None) -> None:
    """Replace one weight of a Keras weights file (None: remove it, from its layer's list too),
    or add it when absent, as a file written that way would hold it."""
    layer = stored_name.split("/")[1]
    with h5py.File(path, "r+") as f:
        group = f[layer]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
        if stored_name in group:
            del group[stored_name]
        if value is None:
            names.remove(stored_name)
        else:
            group.create_dataset(stored_name, data=value)
            names += [] if stored_name in names else [stored_name]
        group.attrs["weight_names"] = [n.encode() for n in names]


SCOPE = "tf_bert_for_sequence_classification"
KERNEL = f"{SCOPE}/bert/encoder/layer_._1/intermediate/dense/kernel:0"
EXTRA = f"{SCOPE}/bert/encoder/layer_._2/output/dense/bias:0"


@pytest.mark.parametrize(
    ("stored_name", "value", "message"),
    [
        (
            KERNEL,
            None,
            f"tf_model.h5 has no weight {KERNEL} (BertForSequenceClassification's "
            "bert.encoder.layer.1.intermediate.dense.weight): refusing to leave it at random",
        ),
        (
            KERNEL,
            np.zeros((16, 31), dtype=np.float32),
            f"tf_model.h5: weight {KERNEL} has shape (16, 31) where BertForSequenceClassification (config.json) "
            "needs (16, 32)",
        ),
        (EXTRA, np.zeros(16, dtype=np.float32), f"tf_model.h5: weight {EXTRA} has no place in BertForSequenceClass"),
    ],
    ids=["missing", "wrong-shape", "left-over"],
)
def test_a_weight_that_does_not_fit_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stored_name: str, value: np.ndarray | None, message: str
) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "bert-classifier", ckpt)
    rewrite(ckpt / "tf_model.h5", stored_name, value)
    capsys.readouterr()
    code = main(["export", str(ckpt), str(tmp_path / "out"), "--task", "classify"])
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"bertserve export: error: {message}"), errors
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_hdf5_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "bert-classifier", ckpt)
    (ckpt / "tf_model.h5").write_bytes(b"not an HDF5 file")
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--task", "classify"]) == 2
    assert f"error: {ckpt / 'tf_model.h5'} cannot be read as HDF5" in capsys.readouterr().err


def test_pytorch_weights_beside_tensorflow_ones_are_used_and_said(tmp_path: Path) -> None:
    """The TF file here has a weight of the wrong shape: the export passes only if it is not read."""
    from service.export.checkpoint import inspect_checkpoint, load_torch_model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "bert-classifier", ckpt)
    load_torch_model(inspect_checkpoint(ckpt), "classify").save_pretrained(str(ckpt))
    rewrite(ckpt / "tf_model.h5", KERNEL, np.zeros((16, 31), dtype=np.float32))
    lines: list[str] = []
    manifest = export_checkpoint(ExportOptions(ckpt, tmp_path / "out", "classify"), log=lines.append)
    assert f"export: {ckpt} has both model.safetensors and tf_model.h5: using the PyTorch weights" in lines[0]
    assert manifest.variants["fp32"].verification["max_abs_diff"] <= TOLERANCE


def test_a_tensorflow_pair_classifier_is_verified_on_pairs(tmp_path: Path) -> None:
    """--pairs on TF weights: verified on pairs against the converted PyTorch model; the
    CrossEncoder.predict check, which reads PyTorch weights only, is skipped and said so."""
    lines: list[str] = []
    opts = ExportOptions(FIXTURES / "bert-classifier", tmp_path / "out", "classify", pairs=True)
    manifest = export_checkpoint(opts, log=lines.append)
    assert manifest.pairs
    fp32 = manifest.variants["fp32"].verification
    assert fp32["max_abs_diff"] <= TOLERANCE and fp32["crossencoder_rows"] == 0
    assert any("CrossEncoder.predict check skipped: sentence-transformers cannot read" in line for line in lines)
