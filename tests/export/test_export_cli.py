"""What a user of `bertserve export` reads: one-line errors, early, and plain output lines (the
usage errors of every command: tests/unit/test_cli.py)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main
from service.export import exporter
from service.export.errors import ExportError
from service.export.exporter import ExportOptions, export_checkpoint
from service.export.plain import strip_ansi
from tests.tiny import make_checkpoint


def test_a_missing_eval_file_is_reported_before_any_model_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_model_work(*_: object) -> None:
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(exporter, "load_torch_model", no_model_work)
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=True)
    capsys.readouterr()  # what building the checkpoint printed
    missing = tmp_path / "eval.csv"
    code = main(["export", str(ckpt), str(tmp_path / "out"), "--task", "classify", "--eval-data", str(missing)])
    assert code == 2
    assert capsys.readouterr().err == f"bertserve export: error: --eval-data {missing} does not exist\n"

    missing.write_text("text,label\nfine,label_0\n")
    with pytest.raises(ExportError, match="classification exports only"):
        export_checkpoint(ExportOptions(ckpt, tmp_path / "out", "embed", eval_data=missing), log=print)


def _run_on_a_terminal(argv: list[str]) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal: progress bars and colours show up
    there, where a user (or a CI log that keeps escapes) meets them."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return proc.wait(timeout=300), b"".join(chunks).decode("utf-8", errors="replace")


def test_export_output_is_plain_lines(tmp_path: Path) -> None:
    """A checkpoint that claims a classification head it lacks makes transformers print its
    load report, in bold and red: it must come out as plain, prefixed lines, and the bar
    transformers draws while loading must not show (a blank line, or a bar with \\r)."""
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=False)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "architectures": ["BertForSequenceClassification"]}))
    argv = [sys.executable, "-m", "service", "export", str(ckpt), str(tmp_path / "out"), "--task", "classify"]
    code, output = _run_on_a_terminal([*argv, "--int8"])

    assert code == 0, output
    lines = output.replace("\r\n", "\n").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert "\x1b" not in output
    assert "\r" not in "\n".join(lines), "a progress bar was drawn"
    assert all(line.startswith("export: ") for line in lines), lines
    assert any("classifier.weight | MISSING" in line for line in lines)
    assert lines[-1].startswith(f"export: wrote {tmp_path / 'out'}")


def test_strip_ansi() -> None:
    assert strip_ansi("\x1b[1mbold\x1b[0m \x1b[38;5;208morange\x1b[0m \x1b[2K\x1b[Aline") == "bold orange line"
