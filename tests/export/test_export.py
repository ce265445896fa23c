"""Real torch, real onnxruntime, tiny random-weight checkpoints: the export toolchain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from transformers import AutoModel, AutoTokenizer

from service.cli import main
from service.export import exporter
from service.export.errors import ExportError
from service.export.exporter import ExportOptions, export_checkpoint
from service.export.quantize import Recipe
from service.export.verify import VARIANT_ARGMAX_AGREEMENT, VARIANT_MIN_COSINE, variant_gate
from service.manifest import Manifest, sha256_file
from tests.recipes import copy_graph, edit_exports, negated_output
from tests.tiny import make_checkpoint

quiet = {"log": lambda _: None}


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
@pytest.mark.parametrize("task", ["classify", "embed"])
def test_export_each_architecture_and_task(tmp_path: Path, arch: str, task: str) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", arch, head=task == "classify")
    out = tmp_path / "model"
    manifest = export_checkpoint(ExportOptions(ckpt, out, task), **quiet)

    on_disk = Manifest.read(out)
    assert on_disk == manifest
    assert on_disk.architecture == arch and on_disk.task == task
    assert set(on_disk.files) >= {"model.onnx", "tokenizer.json", "config.json"}
    for name, digest in on_disk.files.items():
        assert sha256_file(out / name) == digest
    fp32 = on_disk.variants["fp32"].verification
    assert fp32["rows"] >= 200
    if task == "classify":
        assert on_disk.labels == ["label_0", "label_1", "label_2"]
        assert fp32["max_abs_diff"] <= 1e-4
    else:
        assert on_disk.dimension == 32 and on_disk.pooling == "mean"
        assert fp32["cosine_min"] >= 0.9999
    expected_inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if arch == "bert" else [])
    assert on_disk.inputs == expected_inputs
    outputs = [o.name for o in onnx.load(str(out / "model.onnx")).graph.output]
    if task == "classify":
        assert outputs == ["logits"] and on_disk.token_output is None
    else:  # the per-token output too (late chunking), held to the same fp32 gate
        assert outputs == ["sentence_embedding", "token_embeddings"] and on_disk.token_output == outputs[1]
        assert fp32["token_cosine_min"] >= 0.9999


def test_the_graph_does_not_depend_on_where_it_was_exported(tmp_path: Path) -> None:
    """No node carries the exporter's stack traces (absolute paths of this checkout): the same
    checkpoint exported elsewhere is the same graph, with the same checksum."""
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=True)
    export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "classify"), **quiet)
    graph = onnx.load(str(tmp_path / "model" / "model.onnx"))
    keys = {p.key for node in graph.graph.node for p in node.metadata_props}
    assert keys and "pkg.torch.onnx.stack_trace" not in keys  # the other, path-free, metadata stays
    assert str(Path(__file__).resolve().parents[2]) not in str(graph)


def test_embedding_export_matches_sentence_transformers_style_pooling(tmp_path: Path) -> None:
    """Independent of the verifier: run the graph on fresh text and compare with PyTorch."""
    import onnxruntime as ort

    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=False)
    (ckpt / "1_Pooling").mkdir()
    (ckpt / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    out = tmp_path / "model"
    manifest = export_checkpoint(ExportOptions(ckpt, out, "embed", pooling="mean"), **quiet)
    assert manifest.pooling == "cls"  # the checkpoint's own pooling config wins over the flag

    tok = AutoTokenizer.from_pretrained(str(ckpt))
    enc = tok(["a fresh sentence", "and another, longer one than the first"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = AutoModel.from_pretrained(str(ckpt)).eval()(**enc).last_hidden_state[:, 0].numpy()
    session = ort.InferenceSession(str(out / "model.onnx"))
    got = session.run(None, {k: v.numpy() for k, v in enc.items()})[0]
    assert np.abs(got - expected).max() < 1e-4


def test_variants_are_kept_only_when_they_pass_their_gate(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=True)
    eval_csv = tmp_path / "eval.csv"
    eval_csv.write_text("text,label\n" + "".join(f"sentence number {i},label_{i % 3}\n" for i in range(60)))
    out = tmp_path / "model"
    manifest = export_checkpoint(
        ExportOptions(ckpt, out, "classify", int8=True, fp16=True, eval_data=eval_csv), **quiet
    )
    assert manifest.evaluation["eval_rows"] == 60
    assert "eval_accuracy_fp32" in manifest.evaluation
    assert "fp16" in manifest.variants  # fp16 of a tiny model is near exact
    for name, info in manifest.variants.items():
        assert (out / info.file).is_file()
        if name != "fp32":
            assert variant_gate("classify", info.verification).passed
            assert info.verification["argmax_agreement"] >= VARIANT_ARGMAX_AGREEMENT


@pytest.mark.parametrize(
    ("task", "reason"),
    [("classify", "argmax agreement 0.0000 (>= 0.95)"), ("embed", "cosine mean -1.0000 (>= 0.995)")],
)
def test_a_recipe_that_fails_its_gate_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str, reason: str
) -> None:
    monkeypatch.setattr(exporter, "INT8_RECIPES", (Recipe("negated", negated_output),))
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=task == "classify")
    out = tmp_path / "model"
    lines: list[str] = []
    manifest = export_checkpoint(ExportOptions(ckpt, out, task, int8=True), log=lines.append)

    assert list(manifest.variants) == ["fp32"]
    assert sorted(p.name for p in out.glob("*.onnx")) == ["model.onnx"]
    assert "model.int8.onnx" not in manifest.files
    assert f"export: WARNING int8 recipe negated fails its gate: {reason}" in lines[-3]
    assert lines[-2] == "export: WARNING no int8 variant written: no recipe passed its gate"
    assert Manifest.read(out).variants.keys() == {"fp32"}


def test_the_next_recipe_is_tried_after_a_rejected_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipes = (Recipe("negated", negated_output), Recipe("copy", copy_graph))
    monkeypatch.setattr(exporter, "INT8_RECIPES", recipes)
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=True)
    lines: list[str] = []
    manifest = export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "classify", int8=True), log=lines.append)

    assert manifest.variants["int8"].recipe == "copy"
    assert manifest.variants["int8"].verification["argmax_agreement"] == 1.0
    assert any(line.startswith("export: WARNING int8 recipe negated fails its gate") for line in lines)
    assert "export: int8 (copy) verified: argmax agreement 1.0000 (>= 0.95)" in lines
    assert sorted(p.name for p in (tmp_path / "model").glob("*.onnx")) == ["model.int8.onnx", "model.onnx"]


def test_embedding_variant_gate_figures() -> None:
    assert variant_gate("embed", {"cosine_mean": 0.999, "cosine_min": VARIANT_MIN_COSINE}).passed
    assert not variant_gate("embed", {"cosine_mean": 0.999, "cosine_min": 0.9875}).passed
    assert not variant_gate("embed", {"cosine_mean": 0.994, "cosine_min": 0.995}).passed
    drop = {"argmax_agreement": 0.99, "eval_accuracy": 0.80, "eval_accuracy_fp32": 0.82}
    assert not variant_gate("classify", drop).passed


def test_corrupted_export_fails_verification_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def corrupt(model: onnx.ModelProto) -> None:
        weight = max(model.graph.initializer, key=lambda i: int(np.prod(i.dims)) if len(i.dims) == 2 else 0)
        array = numpy_helper.to_array(weight).copy()
        array[:, : array.shape[1] // 2] *= 1.5
        weight.CopyFrom(numpy_helper.from_array(array, weight.name))

    edit_exports(monkeypatch, corrupt)
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=True)
    with pytest.raises(ExportError, match="verification failed"):
        export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "classify"), **quiet)
    assert not (tmp_path / "model").exists()
    assert not any(p.name.startswith(".model") for p in tmp_path.iterdir())


def _cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["export", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len([line for line in err if "error" in line]) == 1
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_bad_inputs_get_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    assert "is not a directory" in _cli_error(capsys, str(tmp_path / "missing"), out, "--task", "embed")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a Hugging Face checkpoint" in _cli_error(capsys, str(empty), out, "--task", "embed")

    gpt = make_checkpoint(tmp_path / "gpt", "bert", head=False)
    config = json.loads((gpt / "config.json").read_text())
    (gpt / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    assert "unsupported architecture 'gpt2'" in _cli_error(capsys, str(gpt), out, "--task", "embed")

    headless = make_checkpoint(tmp_path / "headless", "bert", head=False)
    assert "no sequence-classification head" in _cli_error(capsys, str(headless), out, "--task", "classify")

    (tmp_path / "exists").mkdir()
    assert "exists: pass --force" in _cli_error(capsys, str(headless), str(tmp_path / "exists"), "--task", "embed")


def test_cli_exit_code_in_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "service", "export", str(tmp_path), str(tmp_path / "o"), "--task", "embed"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("bertserve export: error:")
    assert "Traceback" not in proc.stderr
