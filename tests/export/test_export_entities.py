"""Token-classification export (--task entities): real torch, real onnxruntime, tiny taggers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from service.cli import main
from service.export import exporter, verify
from service.export.entities import EntityEval, EntityExample, entity_f1, read_eval_entities
from service.export.errors import ExportError
from service.export.exporter import ExportOptions, export_checkpoint
from service.export.quantize import Recipe
from service.export.verify import VARIANT_TOKEN_ARGMAX_AGREEMENT, served_outputs, variant_gate
from service.manifest import Manifest, sha256_file
from service.runtime.loader import load_model_dir
from service.settings import Settings
from tests.recipes import copy_graph, negated_output
from tests.tiny import BIO_TAGS, make_checkpoint, make_token_checkpoint

quiet = {"log": lambda _: None}


def _xlm_roberta(directory: Path) -> Path:
    """XLM-RoBERTa is RoBERTa's architecture under another name: the tiny RoBERTa, renamed."""
    ckpt = make_token_checkpoint(directory, "roberta")
    config = json.loads((ckpt / "config.json").read_text())
    config.update(model_type="xlm-roberta", architectures=["XLMRobertaForTokenClassification"])
    (ckpt / "config.json").write_text(json.dumps(config))
    return ckpt


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta", "xlm-roberta"])
def test_token_export_matches_pytorch_on_every_real_token(tmp_path: Path, arch: str) -> None:
    build = _xlm_roberta if arch == "xlm-roberta" else lambda d: make_token_checkpoint(d, arch)
    ckpt = build(tmp_path / "ckpt")
    out = tmp_path / "model"
    manifest = export_checkpoint(ExportOptions(ckpt, out, "entities"), **quiet)

    on_disk = Manifest.read(out)
    assert on_disk == manifest
    assert on_disk.task == "entities" and on_disk.architecture == arch
    assert on_disk.labels == list(BIO_TAGS) and on_disk.output == "logits"
    assert on_disk.dimension is None and on_disk.pooling is None and not on_disk.pairs
    for name, digest in on_disk.files.items():
        assert sha256_file(out / name) == digest
    fp32 = on_disk.variants["fp32"].verification
    assert fp32["max_abs_diff"] <= 1e-4
    assert fp32["rows"] == 246 and fp32["tokens"] > 5000
    assert fp32["argmax_agreement"] == 1.0
    # The loader takes it: the output's last dimension is the label count.
    loaded = load_model_dir(out, Settings(models=tmp_path))
    assert loaded.session.output_shape[-1] == len(BIO_TAGS)


def test_served_token_logits_match_pytorch_on_fresh_text(tmp_path: Path) -> None:
    """Independent of the verifier: a padded batch through the loaded model against PyTorch."""
    ckpt = make_token_checkpoint(tmp_path / "ckpt", "bert", seed=3)
    out = tmp_path / "model"
    export_checkpoint(ExportOptions(ckpt, out, "entities"), **quiet)
    loaded = load_model_dir(out, Settings(models=tmp_path))
    texts = ["Tom Hanks starred in a film shot in Paris.", "ok", "Zürich, 1994: Ångström's résumé " * 3]
    rows = loaded.encoder.encode(texts, truncate=True)
    served = loaded.session.run(rows)
    assert served.shape == (3, max(len(r) for r in rows), len(BIO_TAGS))

    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    model = AutoModelForTokenClassification.from_pretrained(str(ckpt)).eval()
    for text, row, logits in zip(texts, rows, served, strict=True):
        enc = tokenizer(text, return_tensors="pt")
        assert enc["input_ids"][0].tolist() == row.tolist()
        with torch.inference_mode():
            expected = model(**enc).logits[0].numpy()
        assert np.abs(logits[: len(row)] - expected).max() <= 1e-4


def test_a_classifier_is_refused_for_entities_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classifier = make_checkpoint(tmp_path / "clf", "bert", head=True)
    tagger = make_token_checkpoint(tmp_path / "tagger", "bert")
    capsys.readouterr()  # the checkpoints' own save output
    code = main(["export", str(classifier), str(tmp_path / "out"), "--task", "entities"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert "has no token-classification head: --task entities needs a *ForTokenClassification checkpoint" in err[0]
    assert not (tmp_path / "out").exists()

    code = main(["export", str(tagger), str(tmp_path / "out"), "--task", "classify"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "it is a token classifier: export it with --task entities" in err[0]

    code = main(["export", str(tagger), str(tmp_path / "out"), "--task", "entities", "--pairs"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--pairs applies to classify" in err[0]


def test_an_int8_recipe_that_fails_the_token_gate_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporter, "INT8_RECIPES", (Recipe("negated", negated_output),))
    ckpt = make_token_checkpoint(tmp_path / "ckpt", "bert")
    out = tmp_path / "model"
    lines: list[str] = []
    manifest = export_checkpoint(ExportOptions(ckpt, out, "entities", int8=True), log=lines.append)

    assert list(manifest.variants) == ["fp32"]
    assert sorted(p.name for p in out.glob("*.onnx")) == ["model.onnx"]
    rejected = next(line for line in lines if "recipe negated fails its gate" in line)
    assert f"(>= {VARIANT_TOKEN_ARGMAX_AGREEMENT})" in rejected
    assert "export: WARNING no int8 variant written: no recipe passed its gate" in lines


def _eval_jsonl(path: Path) -> Path:
    rows = [
        {"text": "Tom Hanks starred in a film shot in Paris.", "entities": [
            {"start": 0, "end": 9, "label": "PER"}, {"start": 36, "end": 41, "label": "LOC"}]},
        {"text": "Angela Merkel met Emmanuel Macron in Berlin.", "entities": [
            {"start": 0, "end": 13, "label": "PER"}, {"start": 18, "end": 33, "label": "PER"},
            {"start": 37, "end": 43, "label": "LOC"}]},
        {"text": "Nothing to see here.", "entities": []},
    ] * 4  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_f1_gate_reads_eval_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporter, "INT8_RECIPES", (Recipe("negated", negated_output), Recipe("copy", copy_graph)))
    ckpt = make_token_checkpoint(tmp_path / "ckpt", "bert")
    eval_data = _eval_jsonl(tmp_path / "dev.jsonl")
    lines: list[str] = []
    manifest = export_checkpoint(
        ExportOptions(ckpt, tmp_path / "model", "entities", int8=True, eval_data=eval_data), log=lines.append
    )

    assert manifest.evaluation["eval_rows"] == 12 and manifest.evaluation["eval_entities"] == 20
    int8 = manifest.variants["int8"]
    assert int8.recipe == "copy"
    assert int8.verification["eval_entity_f1"] == int8.verification["eval_entity_f1_fp32"]
    assert manifest.evaluation["eval_entity_f1_int8"] == manifest.evaluation["eval_entity_f1_fp32"]
    assert any("eval entity F1" in line and "copy" in line for line in lines)


def test_the_f1_gate_rejects_a_recipe_that_changes_the_entities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gold entities are the fp32 graph's own (F1 1.0): a negated graph, let past the
    token agreement, must still be refused on entity F1, and the next recipe kept."""
    ckpt = make_token_checkpoint(tmp_path / "ckpt", "bert", seed=1)
    fp32 = export_checkpoint(ExportOptions(ckpt, tmp_path / "fp32", "entities"), **quiet)
    texts = [json.loads(line)["text"] for line in _eval_jsonl(tmp_path / "texts.jsonl").read_text().splitlines()]
    examples = [EntityExample(t, frozenset()) for t in texts]
    scorer = EntityEval(examples, tmp_path / "fp32" / "tokenizer.json", fp32.max_length, fp32.labels or [])
    logits = served_outputs(
        tmp_path / "fp32" / "model.onnx", [scorer.rows], output="logits", pad_token_id=0, per_token=True
    )[0]
    gold = scorer.predict(logits)
    assert sum(map(len, gold)) > 0
    eval_data = tmp_path / "gold.jsonl"
    eval_data.write_text(
        "".join(
            json.dumps({"text": t, "entities": [{"start": a, "end": b, "label": c} for a, b, c in sorted(g)]}) + "\n"
            for t, g in zip(texts, gold, strict=True)
        )
    )
    monkeypatch.setattr(verify, "VARIANT_TOKEN_ARGMAX_AGREEMENT", 0.0)
    monkeypatch.setattr(exporter, "INT8_RECIPES", (Recipe("negated", negated_output), Recipe("copy", copy_graph)))
    lines: list[str] = []
    manifest = export_checkpoint(
        ExportOptions(ckpt, tmp_path / "model", "entities", int8=True, eval_data=eval_data), log=lines.append
    )

    assert manifest.evaluation["eval_entity_f1_fp32"] == 1.0
    assert manifest.variants["int8"].recipe == "copy"
    rejected = next(line for line in lines if "recipe negated fails its gate" in line)
    assert "vs fp32 1.0000 (drop <= 0.015)" in rejected


def test_the_entity_f1_gate_figures() -> None:
    passing = {"argmax_agreement": 0.99, "eval_entity_f1": 0.81, "eval_entity_f1_fp32": 0.82}
    assert variant_gate("entities", passing).passed
    assert not variant_gate("entities", {**passing, "eval_entity_f1": 0.80}).passed
    assert not variant_gate("entities", {**passing, "argmax_agreement": 0.975}).passed
    assert variant_gate("entities", {"argmax_agreement": 0.98}).passed


def test_entity_f1_is_exact_span_and_label() -> None:
    gold = [{(0, 9, "PER"), (36, 41, "LOC")}, set()]
    assert entity_f1(gold, gold) == 1.0
    assert entity_f1([set(), set()], [set(), set()]) == 1.0
    # One exact hit, one wrong label, one wrong span, one spurious: 2 * 1 / (4 + 2).
    predicted = [{(0, 9, "PER"), (36, 41, "ORG")}, {(1, 3, "LOC"), (5, 6, "PER")}]
    assert entity_f1(predicted, gold) == pytest.approx(1 / 3)


def test_bad_eval_data_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "abc", "entities": [{"start": 0, "end": 2, "label": "PER"}]}\n{"text": "abc"}\n')
    with pytest.raises(ExportError, match="line 2: needs"):
        read_eval_entities(bad)
    bad.write_text('{"text": "abc", "entities": [{"start": 1, "end": 9, "label": "PER"}]}\n')
    with pytest.raises(ExportError, match="outside the text's 3 characters"):
        read_eval_entities(bad)
