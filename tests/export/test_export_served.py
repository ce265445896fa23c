"""Export verification runs the graph through the serving package's own code: a bug in the
served tokenizer, padding or session fails the export, not the first user."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from service.export.errors import ExportError
from service.export.exporter import ExportOptions, export_checkpoint
from service.export.verify import served_outputs
from service.runtime.session import InferenceError, OnnxSession
from tests.tiny import make_checkpoint

quiet = {"log": lambda _: None}
Pad = Callable[[OnnxSession, Sequence[np.ndarray]], dict[str, np.ndarray]]
real_pad: Pad = OnnxSession.pad


def mask_covers_padding(self: OnnxSession, rows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    feeds = real_pad(self, rows)
    feeds["attention_mask"] = np.ones_like(feeds["attention_mask"])
    return feeds


def pads_on_the_left(self: OnnxSession, rows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """A consistent mask, but the positions of every padded row shift."""
    feeds = real_pad(self, rows)
    for name in ("input_ids", "attention_mask"):
        lengths = feeds["attention_mask"].sum(axis=1)
        feeds[name] = np.stack(
            [np.roll(row, int(row.shape[0] - n)) for row, n in zip(feeds[name], lengths, strict=True)]
        )
    return feeds


@pytest.mark.parametrize(
    ("task", "bug"),
    [("classify", mask_covers_padding), ("classify", pads_on_the_left), ("embed", mask_covers_padding)],
    ids=["classify-mask", "classify-left", "embed-mask"],
)
def test_a_bug_in_the_served_padding_fails_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str, bug: Pad
) -> None:
    calls = []

    def spy(self: OnnxSession, rows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(rows))
        return bug(self, rows)

    monkeypatch.setattr(OnnxSession, "pad", spy)
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=task == "classify")
    with pytest.raises(ExportError, match="verification failed: fp32"):
        export_checkpoint(ExportOptions(ckpt, tmp_path / "model", task), **quiet)
    assert calls, "verification did not go through OnnxSession.pad"
    assert not (tmp_path / "model").exists()
    assert not any(p.name.startswith(".model") for p in tmp_path.iterdir())


def test_the_served_padding_is_what_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: the same export, with the real pad, passes through it."""
    calls = []

    def spy(self: OnnxSession, rows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(rows))
        return real_pad(self, rows)

    monkeypatch.setattr(OnnxSession, "pad", spy)
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=True)
    manifest = export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "classify"), **quiet)
    assert sum(calls) == manifest.variants["fp32"].verification["rows"]


def test_token_ids_of_the_served_tokenizer_must_match_the_checkpoints(tmp_path: Path) -> None:
    """A checkpoint whose tokenizer cuts long texts from the left: the service cuts from the
    right, so it would serve other tokens than PyTorch sees. Refused, with the first difference."""
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=True)
    config = json.loads((ckpt / "tokenizer_config.json").read_text())
    (ckpt / "tokenizer_config.json").write_text(json.dumps({**config, "truncation_side": "left"}))
    with pytest.raises(ExportError, match=r"different token ids for \d+ of \d+ verification texts"):
        export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "classify"), **quiet)
    assert not (tmp_path / "model").exists()


def test_onnxruntime_failures_come_out_as_one_type(broken_repo: Path) -> None:
    """The broken graph knows 1,000 token ids: id 5,000 makes onnxruntime raise its own type,
    which OnnxSession.run maps to InferenceError and export to a one-line ExportError."""
    graph = broken_repo / "broken" / "model.onnx"
    session = OnnxSession(graph, output="logits", pad_token_id=0, providers=["CPUExecutionProvider"], threads=1)
    assert session.run([np.array([101, 999, 102])]).shape == (1, 3)
    with pytest.raises(InferenceError, match="InvalidArgument"):
        session.run([np.array([101, 5000, 102])])

    with pytest.raises(ExportError, match=r"onnxruntime fails to run model\.onnx: InvalidArgument") as info:
        served_outputs(graph, [[np.array([101, 5000, 102])]], output="logits", pad_token_id=0)
    assert "\n" not in str(info.value)


def test_a_graph_onnxruntime_cannot_load_is_an_export_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(ExportError, match=r"onnxruntime: model\.onnx does not load"):
        served_outputs(bad, [[np.array([101, 102])]], output="logits", pad_token_id=0)
