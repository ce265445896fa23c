"""What `serve --model` is given, on the command line and in BERTSERVE_MODEL_SOURCES, and the
refusals made before anything is exported or bound, each in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import build_parser
from service.settings import Settings
from service.sources.cache import Cache
from service.sources.detect import SourceError
from service.sources.serving import for_sources
from service.sources.spec import Source, parse_entries
from tests.unit.sources.test_detect import folder


def test_options_apply_to_the_model_before_them() -> None:
    args = build_parser().parse_args(
        ["serve", "--model", "a", "--task", "rerank", "--max-length", "128", "--model", "b", "--no-int8", "--fp16"]
    )
    assert args.sources == [
        Source("a", task="rerank", max_length=128),
        Source("b", int8=False, fp16=True),
    ]
    assert args.sources[0].overrides() == ["--task", "--max-length"]


def test_an_option_before_any_model_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--task", "rerank", "--model", "a"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "bertserve serve: error: --task applies to the --model before it: give --model SOURCE first "
        "(see bertserve serve --help)\n"
    )


def test_the_environment_form() -> None:
    assert parse_entries("/ckpt;task=rerank;int8=false;max-length=256, org/name@v1 ,") == [
        Source("/ckpt", task="rerank", int8=False, max_length=256),
        Source("org/name@v1"),
    ]
    for entry, message in (
        ("/ckpt;colour=red", "unknown option 'colour'"),
        ("/ckpt;task=translate", "task 'translate' in '/ckpt;task=translate': one of classify"),
        ("/ckpt;int8=maybe", "int8='maybe' in '/ckpt;int8=maybe': true or false"),
        ("/ckpt;max-length=-3", "max-length '-3' in '/ckpt;max-length=-3' is not a positive integer"),
    ):
        with pytest.raises(SourceError, match=message):
            parse_entries(entry)


def _settings(tmp_path: Path, *sources: str) -> Settings:
    return Settings(model_sources=list(sources), cache_dir=tmp_path / "cache")


def test_an_exported_directory_is_served_as_it_is(tmp_path: Path) -> None:
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "manifest.json").write_text(json.dumps({"name": "mine"}))
    settings, prepare = for_sources(_settings(tmp_path, str(exported)), [])
    assert prepare is None
    assert (settings.models / "mine").resolve() == exported
    with pytest.raises(SourceError) as refused:
        for_sources(_settings(tmp_path), [Source(str(exported), task="embed", given=("task",))])
    assert (
        str(refused.value) == f"{exported} is an exported model directory, served as it is: --task apply to checkpoints"
    )


def test_a_checkpoint_not_cached_is_left_to_export(tmp_path: Path) -> None:
    ckpt = folder(tmp_path, "sentiment", "BertForSequenceClassification")
    settings, prepare = for_sources(_settings(tmp_path, str(ckpt)), [])
    assert prepare is not None
    assert list(settings.models.iterdir()) == [settings.models / ".building.json"]
    building = json.loads((settings.models / ".building.json").read_text())
    assert building == {"sentiment": {"task": "classify", "state": "queued"}}
    assert Cache(tmp_path / "cache").entries() == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nowhere", "{p}/nowhere: no such folder, and not a hub id (org/name or org/name@revision)"),
        (
            lambda p: folder(p, "qa", "BertForQuestionAnswering"),
            "unsupported architecture BertForQuestionAnswering in {p}/qa: supported are",
        ),
        (
            lambda p: folder(p, "enc", "BertModel"),
            None,
        ),
    ],
)
def test_refusals_are_one_line(tmp_path: Path, make: object, message: str | None) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    if message is None:  # --pairs on an embedding model
        source = Source(str(path), pairs=True, given=("pairs",))
        message = "{p}/enc: --pairs applies to classify (a pair classifier), not embed"
    else:
        source = Source(str(path))
    with pytest.raises(SourceError) as refused:
        for_sources(_settings(tmp_path), [source])
    assert str(refused.value).startswith(message.format(p=tmp_path))
    assert "\n" not in str(refused.value)


def test_a_name_served_twice_is_refused(tmp_path: Path) -> None:
    one = folder(tmp_path / "a", "sentiment", "BertForSequenceClassification")
    two = folder(tmp_path / "b", "sentiment", "BertForSequenceClassification", labels=2)
    with pytest.raises(SourceError, match=r"^model name sentiment is served twice: give one of them --name$"):
        for_sources(_settings(tmp_path, str(one), str(two)), [])
    _, prepare = for_sources(_settings(tmp_path, str(one)), [Source(str(two), name="other", given=("name",))])
    assert prepare is not None
