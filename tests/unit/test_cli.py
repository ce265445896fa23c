"""What a user of `bertserve` reads: help written for them, the version, one-line usage
errors, and no option guessed from a prefix."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import pytest

from service.cli import _build, main, settings_help
from service.settings import Settings


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int | str | None, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["export", "c", "o", "--task", "bogus"], "bertserve export: error: argument --task: invalid choice: 'bogus'"),
        (["export", "c"], "bertserve export: error: the following arguments are required: out_dir, --task"),
        (
            ["export", "c", "o", "--task", "embed", "--max-length", "x"],
            "bertserve export: error: argument --max-length",
        ),
        (["serve", "--port", "eighty"], "bertserve serve: error: argument --port: invalid int value: 'eighty'"),
        (["frobnicate"], "bertserve: error: argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "bertserve: error: the following arguments are required: COMMAND"),
        (["serve", "extra"], "bertserve serve: error: unrecognized arguments: extra (see bertserve serve --help)"),
    ],
)
def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    code, out, err = _run(capsys, argv)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(expected)
    assert lines[0].endswith("--help)")


def test_serve_named_twice_is_serve(capsys: pytest.CaptureFixture[str]) -> None:
    """An image's entrypoint is `bertserve serve`, and `docker run <image> serve --model ...`
    names the command again: the same usage error as `serve` alone proves it was read so."""
    twice = _run(capsys, ["serve", "serve", "--port", "eighty"])
    once = _run(capsys, ["serve", "--port", "eighty"])
    assert twice == once and twice[0] == 2 and "argument --port" in str(twice[2])


@pytest.mark.parametrize(
    ("argv", "command", "unknown"),
    [
        (["serve", "--mode", "elsewhere"], "serve", "--mode elsewhere"),
        (["serve", "--mod=elsewhere"], "serve", "--mod=elsewhere"),
        (["serve", "--po", "8100"], "serve", "--po 8100"),
        (["export", "ckpt", "out", "--task", "embed", "--forc"], "export", "--forc"),
        (["export", "ckpt", "out", "--task", "embed", "--max-len", "64"], "export", "--max-len 64"),
    ],
)
def test_an_option_is_never_taken_from_a_prefix(
    capsys: pytest.CaptureFixture[str], argv: list[str], command: str, unknown: str
) -> None:
    """`--mode` is neither `--model` nor `--models`: it is refused, named by the command it was given to, and
    nothing runs (serving "elsewhere" would have returned 2 from main, not raised)."""
    code, out, err = _run(capsys, argv)
    assert code == 2
    assert out == ""
    assert err == f"bertserve {command}: error: unrecognized arguments: {unknown} (see bertserve {command} --help)\n"


def test_no_parser_completes_abbreviations() -> None:
    parser, commands = _build()
    assert set(commands) == {"serve", "export", "run-batch", "cache"}
    assert all(not p.allow_abbrev for p in (parser, *commands.values()))


def test_the_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, ["--version"])
    assert code == 0
    assert out == f"bertserve {importlib.metadata.version('bertserve')}\n"


def test_the_help_is_written_for_users(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # what argparse assumes when the output is not a terminal
    code, out, _ = _run(capsys, ["--help"])
    assert code == 0
    assert out.startswith("usage: bertserve [-h] [--version] COMMAND ...\n\nServe fine-tuned BERT-family models")
    assert "one-line errors" not in out  # the module's docstring is for its developers
    commands = out.split("commands:\n", 1)[1].split("\n\n", 1)[0].split("\n")
    assert [line.split()[0] for line in commands] == ["serve", "export", "run-batch", "cache"]
    assert "BERTSERVE_PORT=8100 bertserve serve" in out


def test_serve_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, ["serve", "--help"])
    assert code == 0
    assert re.search(r"--models DIR +model repository \(BERTSERVE_MODELS, default models\)", out)
    assert re.search(r"--port PORT +TCP port \(BERTSERVE_PORT, default 8000\)", out)
    names = [f"BERTSERVE_{name.upper()}" for name in Settings.model_fields]
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  BERTSERVE_")]
    assert listed == names
    assert f"settings: {len(names)}, each an environment variable" in out
    assert "README.md, section Configuration" in out


@pytest.mark.parametrize("width", [60, 80, 132])
def test_each_setting_is_one_line_within_the_width(width: int) -> None:
    """The start of each description, whole where it fits, else cut at a clause or a word."""
    rows = {
        line.split()[0]: line.split(None, 1)[1]
        for line in settings_help(width).splitlines()
        if line.startswith("  BERTSERVE_")
    }
    assert len(rows) == len(Settings.model_fields)
    assert all(len(f"  {name:<32}{text}") <= width for name, text in rows.items()), rows
    for name, field in Settings.model_fields.items():
        assert (field.description or "").startswith(rows[f"BERTSERVE_{name.upper()}"].removesuffix("...")), name
    assert rows["BERTSERVE_PORT"] == "TCP port"
    assert rows["BERTSERVE_VERIFY_MODELS"].endswith("...")  # no clause break in the room: cut at a word
    if width == 80:
        assert rows["BERTSERVE_PROVIDER"] == "execution provider: auto (CUDA if available)"


def test_the_cli_loads_neither_torch_nor_transformers() -> None:
    """`bertserve serve --help` (and serving) stays on the serving side of the install."""
    code = (
        "import sys, contextlib, io\n"
        "from service.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['serve', '--help'])\n"
        "print(sorted(m for m in ('torch', 'transformers', 'service.export') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[]\n"
