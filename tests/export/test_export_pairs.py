"""Export of models that take text pairs: cross-encoders (--task rerank) and pair classifiers
(--task classify --pairs), verified on pairs against PyTorch and CrossEncoder.predict.

Real torch, real onnxruntime, real sentence-transformers; tiny random-weight checkpoints whose
logits are of order 1 (tests/tiny.py), so a 1e-4 gate means something.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from sentence_transformers import CrossEncoder
from tokenizers import Encoding
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from service.cli import main
from service.export import exporter, pairs
from service.export.data import load_reviews, verification_pairs
from service.export.errors import ExportError
from service.export.exporter import ExportOptions, export_checkpoint
from service.export.quantize import Recipe
from service.export.verify import VARIANT_RANK_AGREEMENT, rank_agreement, variant_gate
from service.manifest import Manifest
from service.runtime.loader import load_model_dir
from service.runtime.session import OnnxSession
from service.runtime.tokenizer import TextEncoder
from service.settings import Settings
from tests.export.test_export_cli import _run_on_a_terminal
from tests.recipes import negated_output
from tests.tiny import make_checkpoint, make_crossencoder, make_pair_checkpoint

quiet = {"log": lambda _: None}
CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def crossencoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A sentence-transformers CrossEncoder folder and its exported model directory."""
    root = tmp_path_factory.mktemp("crossencoder")
    ckpt = make_crossencoder(root / "ckpt")
    out = root / "model"
    export_checkpoint(ExportOptions(ckpt, out, "rerank"), **quiet)
    return ckpt, out


def _session(model_dir: Path) -> OnnxSession:
    manifest = Manifest.read(model_dir)
    return OnnxSession(
        model_dir / "model.onnx", output=manifest.output, pad_token_id=manifest.pad_token_id, providers=CPU, threads=1
    )


def _fresh_pairs() -> list[tuple[str, str]]:
    """Not the verifier's pairs: other reviews, a query, passages short and over the limit."""
    reviews = [t.replace("<br />", " ") for t, _ in load_reviews("imdb")[-40:]]
    sentences = [t for t, _ in load_reviews("rotten_tomatoes")[-40:]]
    query = "which film has the best acting?"
    return (
        [(query, r) for r in reviews[:12]]
        + [(query, s) for s in sentences[:12]]
        + list(zip(sentences[12:20], sentences[20:28], strict=True))
    )


# --- the manifest and the graph -------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_rerank_export_of_each_architecture(tmp_path: Path, arch: str) -> None:
    """RoBERTa gets a real byte-level BPE tokenizer: its own pair template, <s> a </s></s> b </s>."""
    ckpt = make_pair_checkpoint(tmp_path / "ckpt", arch, num_labels=1, bpe=arch == "roberta")
    out = tmp_path / "model"
    manifest = export_checkpoint(ExportOptions(ckpt, out, "rerank"), **quiet)

    assert Manifest.read(out) == manifest
    assert manifest.task == "rerank" and manifest.pairs and manifest.output == "logits"
    assert manifest.labels is None and not manifest.multi_label and manifest.dimension is None
    expected_inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if arch == "bert" else [])
    assert manifest.inputs == expected_inputs
    assert [d.dim_param or d.dim_value for d in _output_dims(out)] == ["batch", 1]
    fp32 = manifest.variants["fp32"].verification
    assert fp32["rows"] == len(verification_pairs())
    assert fp32["max_abs_diff"] <= 1e-4
    assert fp32["crossencoder_rows"] >= 80  # the pairs that fit untruncated in 128 tokens
    assert fp32["crossencoder_max_abs_diff"] <= 1e-4
    assert manifest.evaluation["crossencoder_activation"] == "Sigmoid"
    if arch == "roberta":
        row = TextEncoder(out / "tokenizer.json", manifest.max_length).encode_pairs([("a b", "c")], truncate=True)[0]
        tok = AutoTokenizer.from_pretrained(str(ckpt))
        assert row[0].tolist() == tok("a b", "c")["input_ids"]
        assert row[0].tolist().count(2) == 3  # </s></s> between the texts, </s> at the end


def _output_dims(model_dir: Path) -> Sequence[onnx.TensorShapeProto.Dimension]:
    graph = onnx.load(str(model_dir / "model.onnx")).graph
    return list(graph.output[0].type.tensor_type.shape.dim)


def test_the_service_loads_a_rerank_model(crossencoder: tuple[Path, Path]) -> None:
    """The loader's own checks: inputs as the manifest says, an output of width 1."""
    _, out = crossencoder
    loaded = load_model_dir(out, Settings(models=out.parent, provider="cpu"))
    assert loaded.manifest.task == "rerank" and loaded.manifest.pairs
    rows = loaded.encoder.encode_pairs([("a query", "a passage"), ("a query", "another, longer passage")], True)
    assert loaded.session.run(rows).shape == (2, 1)


def test_rerank_graph_matches_pytorch_and_crossencoder_predict(crossencoder: tuple[Path, Path]) -> None:
    """Independent of the verifier, on fresh pairs: the served path (TextEncoder.encode_pairs,
    OnnxSession) against transformers + torch with only_second truncation, and against
    CrossEncoder.predict (its default activation, sigmoid, and raw) where nothing is truncated."""
    ckpt, out = crossencoder
    max_length = Manifest.read(out).max_length
    fresh = _fresh_pairs()
    served = _session(out).run(TextEncoder(out / "tokenizer.json", max_length).encode_pairs(fresh, truncate=True))
    assert served.shape == (len(fresh), 1)

    tok = AutoTokenizer.from_pretrained(str(ckpt))
    enc = tok(
        [a for a, _ in fresh],
        [b for _, b in fresh],
        truncation="only_second",
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )
    assert any(len(tok(a, b)["input_ids"]) > max_length for a, b in fresh), "no pair exercises truncation"
    with torch.inference_mode():
        expected = AutoModelForSequenceClassification.from_pretrained(str(ckpt)).eval()(**enc).logits.numpy()
    assert np.abs(served - expected).max() <= 1e-4
    assert expected.std() > 0.1, "logits too flat for the gate to mean anything"

    fits = [i for i, (a, b) in enumerate(fresh) if len(tok(a, b)["input_ids"]) <= max_length]
    model = CrossEncoder(str(ckpt), device="cpu")
    picked = [list(fresh[i]) for i in fits]
    scores = model.predict(picked, show_progress_bar=False)
    raw = model.predict(picked, show_progress_bar=False, activation_fn=torch.nn.Identity())
    assert np.abs(1 / (1 + np.exp(-served[fits, 0])) - scores).max() <= 1e-4
    assert np.abs(served[fits, 0] - raw).max() <= 1e-4


def test_pair_classifier_export_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = make_pair_checkpoint(tmp_path / "ckpt", "bert", num_labels=3)
    out = tmp_path / "model"
    assert main(["export", str(ckpt), str(out), "--task", "classify", "--pairs"]) == 0
    lines = capsys.readouterr().err.splitlines()
    manifest = Manifest.read(out)
    assert manifest.task == "classify" and manifest.pairs
    assert manifest.labels == ["label_0", "label_1", "label_2"]
    assert "token_type_ids" in manifest.inputs
    fp32 = manifest.variants["fp32"].verification
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["argmax_agreement"] == 1.0
    assert fp32["crossencoder_max_abs_diff"] <= 1e-4
    assert any(line.startswith("export: PyTorch reference on 208 pairs") for line in lines)
    assert manifest.evaluation["crossencoder_activation"] == "Identity"  # predict's default for 3 labels


def test_pair_classifier_variants_gate_on_pair_eval_data(tmp_path: Path) -> None:
    ckpt = make_pair_checkpoint(tmp_path / "ckpt", "distilbert", num_labels=2)
    sentences = [t for t, _ in load_reviews("rotten_tomatoes")[:80]]
    rows = [
        {"text": a, "text_pair": b, "label": f"label_{i % 2}"} for i, (a, b) in enumerate(itertools.pairwise(sentences))
    ]
    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = export_checkpoint(
        ExportOptions(ckpt, tmp_path / "model", "classify", pairs=True, int8=True, eval_data=data), **quiet
    )
    assert manifest.pairs and manifest.evaluation["eval_rows"] == 79
    assert "eval_accuracy_fp32" in manifest.evaluation

    single = tmp_path / "single.csv"
    single.write_text("text,label\nfine,label_0\n")
    with pytest.raises(ExportError, match="needs text, text_pair and label on every row"):
        export_checkpoint(ExportOptions(ckpt, tmp_path / "other", "classify", pairs=True, eval_data=single), **quiet)
    assert not (tmp_path / "other").exists()


# --- truncation of pairs ------------------------------------------------------------------------


def test_truncation_keeps_the_query(crossencoder: tuple[Path, Path]) -> None:
    """Served ids of an over-long pair: [CLS] query [SEP] passage... [SEP], the query whole,
    the passage cut to fit, segment ids 0 then 1; the same ids transformers gives with only_second."""
    ckpt, out = crossencoder
    max_length = Manifest.read(out).max_length
    encoder = TextEncoder(out / "tokenizer.json", max_length)
    tok = AutoTokenizer.from_pretrained(str(ckpt))
    query = "is the plot of this film worth the two hours?"
    passage = " ".join(t for t, _ in load_reviews("imdb")[:3])
    row = encoder.encode_pairs([(query, passage)], truncate=True)[0]

    query_ids = tok(query, add_special_tokens=False)["input_ids"]
    cls, sep = tok.cls_token_id, tok.sep_token_id
    ids, segments = row[0].tolist(), row[1].tolist()
    assert len(ids) == max_length
    assert ids[: len(query_ids) + 2] == [cls, *query_ids, sep]
    assert ids[-1] == sep
    passage_ids = tok(passage, add_special_tokens=False)["input_ids"]
    kept = max_length - len(query_ids) - 3
    assert ids[len(query_ids) + 2 : -1] == passage_ids[:kept]
    assert segments == [0] * (len(query_ids) + 2) + [1] * (kept + 1)
    assert ids == tok(query, passage, truncation="only_second", max_length=max_length)["input_ids"]


def test_a_query_alone_over_the_limit_is_cut_longest_first(crossencoder: tuple[Path, Path]) -> None:
    ckpt, out = crossencoder
    max_length = Manifest.read(out).max_length
    encoder = TextEncoder(out / "tokenizer.json", max_length)
    tok = AutoTokenizer.from_pretrained(str(ckpt))
    query, passage = "word " * 300, "a short passage"
    ids = encoder.encode_pairs([(query, passage)], truncate=True)[0][0].tolist()
    assert len(ids) == max_length
    assert ids == tok(query, passage, truncation="longest_first", max_length=max_length)["input_ids"]


def test_served_pair_truncation_must_match_the_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A served tokenizer that cut pairs longest-first would drop query tokens PyTorch keeps:
    the export is refused on the token ids, before any number is compared."""

    def longest_first(self: TextEncoder, first: Encoding, second: Encoding, truncate: bool) -> Encoding:
        return self._truncating.post_process(first, second) if truncate else self._full.post_process(first, second)

    monkeypatch.setattr(TextEncoder, "_join", longest_first)
    ckpt = make_pair_checkpoint(tmp_path / "ckpt", "bert", num_labels=1)
    with pytest.raises(ExportError, match=r"different token ids for \d+ of \d+ verification pairs"):
        export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "rerank"), **quiet)
    assert not (tmp_path / "model").exists()


def test_a_bug_in_the_served_segment_ids_fails_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Segment ids all 0 (a pair served as if it were one text): the logits move, the export fails."""
    real_pad = OnnxSession.pad

    def no_segments(self: OnnxSession, rows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        feeds = real_pad(self, rows)
        feeds["token_type_ids"] = np.zeros_like(feeds["token_type_ids"])
        return feeds

    monkeypatch.setattr(OnnxSession, "pad", no_segments)
    ckpt = make_pair_checkpoint(tmp_path / "ckpt", "bert", num_labels=1)
    with pytest.raises(ExportError, match="verification failed: fp32 logits differ from PyTorch"):
        export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "rerank"), **quiet)
    assert not (tmp_path / "model").exists()


# --- refusals -----------------------------------------------------------------------------------


def _cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err.strip()


def test_a_checkpoint_with_the_wrong_head_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_model_work(*_: object) -> None:
        raise AssertionError("the model was loaded before the checkpoint was checked")

    monkeypatch.setattr(exporter, "load_torch_model", no_model_work)
    three = make_checkpoint(tmp_path / "three", "bert", head=True, num_labels=3)
    headless = make_checkpoint(tmp_path / "headless", "bert", head=False)
    one = make_pair_checkpoint(tmp_path / "one", "bert", num_labels=1)
    capsys.readouterr()
    out = str(tmp_path / "out")
    assert _cli_error(capsys, str(three), out, "--task", "rerank") == (
        f"bertserve export: error: {three} has a classification head with 3 outputs: --task rerank needs a "
        "cross-encoder with one output (a pair classifier exports with --task classify --pairs)"
    )
    assert _cli_error(capsys, str(headless), out, "--task", "rerank") == (
        f"bertserve export: error: {headless} has no sequence-classification head: --task rerank needs a cross-encoder"
    )
    assert _cli_error(capsys, str(headless), out, "--task", "embed", "--pairs").endswith(
        "--pairs applies to classify (a pair classifier); rerank always takes pairs"
    )
    data = tmp_path / "dev.csv"
    data.write_text("text,text_pair,label\na,b,0\n")
    assert _cli_error(capsys, str(one), out, "--task", "rerank", "--eval-data", str(data)).endswith(
        "--eval-data applies to classification exports only"
    )


# --- reduced precision --------------------------------------------------------------------------


def test_rerank_variants_are_gated_on_score_order_and_sigmoid_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipes = (Recipe("negated", negated_output), Recipe("copy", lambda s, d: shutil.copyfile(s, d)))
    monkeypatch.setattr(exporter, "INT8_RECIPES", recipes)
    ckpt = make_pair_checkpoint(tmp_path / "ckpt", "distilbert", num_labels=1)
    lines: list[str] = []
    manifest = export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "rerank", int8=True), log=lines.append)

    negated = next(line for line in lines if "recipe negated fails its gate" in line)
    assert "rank agreement 0.0000 (>= 0.98)" in negated
    assert manifest.variants["int8"].recipe == "copy"
    assert manifest.variants["int8"].verification["rank_agreement"] == 1.0
    assert manifest.variants["int8"].verification["score_max_abs_diff"] <= 1e-6  # vs PyTorch: the fp32 graph


def test_rank_agreement_and_the_rerank_gate() -> None:
    assert rank_agreement(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(2 / 3)
    assert rank_agreement(np.array([1.0, 1.0]), np.array([2.0, 1.0])) == 1.0  # reference ties are not counted
    ok = {"rank_agreement": VARIANT_RANK_AGREEMENT, "score_max_abs_diff": 0.01}
    assert variant_gate("rerank", ok).passed
    assert not variant_gate("rerank", {**ok, "rank_agreement": 0.97}).passed
    assert not variant_gate("rerank", {**ok, "score_max_abs_diff": 0.06}).passed


# --- without sentence-transformers --------------------------------------------------------------


def test_without_sentence_transformers_the_check_is_recorded_as_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pairs, "sentence_transformers_installed", lambda: False)
    ckpt = make_pair_checkpoint(tmp_path / "ckpt", "distilbert", num_labels=1)
    lines: list[str] = []
    manifest = export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "rerank"), log=lines.append)
    fp32 = manifest.variants["fp32"].verification
    assert fp32["crossencoder_rows"] == 0 and "crossencoder_max_abs_diff" not in fp32
    assert fp32["max_abs_diff"] <= 1e-4
    assert "crossencoder_activation" not in manifest.evaluation
    assert "export: sentence-transformers is not installed: CrossEncoder.predict check skipped" in lines


def test_rerank_export_output_is_plain_lines(crossencoder: tuple[Path, Path], tmp_path: Path) -> None:
    """On a terminal, where sentence-transformers and transformers draw bars and colours: none."""
    ckpt, _ = crossencoder
    argv = [sys.executable, "-m", "service", "export", str(ckpt), str(tmp_path / "out"), "--task", "rerank"]
    code, output = _run_on_a_terminal(argv)
    assert code == 0, output
    lines = output.replace("\r\n", "\n").rstrip("\n").split("\n")
    assert "\x1b" not in output and "\r" not in "\n".join(lines)
    assert all(line.startswith("export: ") for line in lines), lines
    assert any(line.startswith("export: CrossEncoder.predict reference on ") for line in lines)
    assert lines[-1] == f"export: wrote {tmp_path / 'out'} (fp32)"
