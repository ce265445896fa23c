"""The default model of each task: the setting over the manifests over the only model, and a
clear refusal when the choice names what is not served or is claimed twice."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.defaults import DefaultsError, choose_defaults
from service.kinds import ModelKind
from service.manifest import Manifest, VariantInfo
from service.server import settings_error
from service.settings import Settings


def _manifest(name: str, task: ModelKind, default: bool = False) -> Manifest:
    return Manifest(
        name=name,
        task=task,
        architecture="bert",
        max_length=128,
        inputs=["input_ids", "attention_mask"],
        output="logits",
        default=default,
        variants={"fp32": VariantInfo(file="model.onnx", precision="fp32")},
    )


REPOSITORY = [
    _manifest("sentiment", "classify"),
    _manifest("topics", "classify"),
    _manifest("minilm", "embed"),
    _manifest("ner", "entities"),
]


def test_the_only_model_of_a_task_is_its_default_and_several_have_none() -> None:
    assert choose_defaults({}, REPOSITORY) == {"embed": "minilm", "entities": "ner"}


def test_a_manifest_names_the_default_of_its_task() -> None:
    manifests = [*REPOSITORY[:1], _manifest("topics", "classify", default=True), *REPOSITORY[2:]]
    assert choose_defaults({}, manifests) == {"classify": "topics", "embed": "minilm", "entities": "ner"}


def test_the_setting_wins_over_the_manifests() -> None:
    claims = [_manifest("sentiment", "classify", default=True), _manifest("topics", "classify", default=True)]
    assert choose_defaults({"classify": "sentiment"}, [*claims, *REPOSITORY[2:]])["classify"] == "sentiment"
    assert choose_defaults({"classify": "topics"}, [*claims, *REPOSITORY[2:]])["classify"] == "topics"


def test_two_manifests_claiming_one_task_are_refused_with_the_way_out() -> None:
    claims = [_manifest("topics", "classify", default=True), _manifest("sentiment", "classify", default=True)]
    with pytest.raises(DefaultsError) as caught:
        choose_defaults({}, [*claims, *REPOSITORY[2:]])
    assert str(caught.value) == (
        'sentiment, topics each say they are the default classify model ("default": true in their '
        "manifest.json): clear it in all but one, or set BERTSERVE_DEFAULT_MODELS=classify=<name>"
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"classify": "sentimental"},
            "BERTSERVE_DEFAULT_MODELS names classify=sentimental, but 'sentimental' is not served "
            "(classify models: sentiment, topics)",
        ),
        (
            {"classify": "minilm"},
            "BERTSERVE_DEFAULT_MODELS names classify=minilm, but 'minilm' is an embed model "
            "(classify models: sentiment, topics)",
        ),
        (
            {"rerank": "minilm"},
            "BERTSERVE_DEFAULT_MODELS names rerank=minilm, but 'minilm' is an embed model (rerank models: none)",
        ),
    ],
)
def test_a_setting_that_names_no_model_of_its_task_is_refused(setting: dict[ModelKind, str], message: str) -> None:
    with pytest.raises(DefaultsError) as caught:
        choose_defaults(setting, REPOSITORY)
    assert str(caught.value) == message


def test_the_setting_is_read_from_task_name_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTSERVE_DEFAULT_MODELS", " classify = sentiment ,embed=minilm,")
    assert Settings().default_models == {"classify": "sentiment", "embed": "minilm"}
    monkeypatch.setenv("BERTSERVE_DEFAULT_MODELS", "")
    assert Settings().default_models == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("clasify=sentiment", "'clasify=sentiment': unknown task 'clasify' (one of classify, embed, rerank, entities)"),
        ("classify", "'classify': write task=name, e.g. classify=my-model"),
        ("classify=a,classify=b", "task classify is named twice"),
    ],
)
def test_a_malformed_setting_is_one_line_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(default_models=value)  # type: ignore[arg-type]
    assert settings_error(caught.value) == f"setting default_models (BERTSERVE_DEFAULT_MODELS): {message}"
