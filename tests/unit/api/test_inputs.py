import pytest

from service.api.deps import text_inputs
from service.api.errors import _param
from service.errors import InvalidInput


def test_single_string_becomes_a_list() -> None:
    assert text_inputs("hi", 4, 10) == ["hi"]


@pytest.mark.parametrize(
    ("value", "param"),
    [(["a"] * 5, "inputs"), (["ok", "x" * 11], "inputs[1]"), ("x" * 11, "inputs")],
)
def test_limits_name_the_offending_input(value: str | list[str], param: str) -> None:
    with pytest.raises(InvalidInput) as err:
        text_inputs(value, 4, 10)
    assert err.value.param == param


def test_param_paths_drop_union_branch_names() -> None:
    assert _param(["inputs", "list[str]", "2"]) == "inputs[2]"
    assert _param(["top_k"]) == "top_k"
    assert _param([]) is None
