import pytest

from service.api.errors import _param
from service.errors import InvalidInput
from service.tasks.common import Texts, check_limits, coverage


def test_single_string_becomes_a_list() -> None:
    texts = Texts.of("hi", "inputs")
    assert texts.items == ["hi"] and texts.where(0) == "inputs" and not texts.pairs


def test_pairs_and_mixes() -> None:
    pairs = Texts.of([["a", "b"], ["c", "d"]], "inputs")
    assert pairs.pairs and pairs.items == [("a", "b"), ("c", "d")]
    assert [w for w, _ in pairs.strings()] == ["inputs[0][0]", "inputs[0][1]", "inputs[1][0]", "inputs[1][1]"]
    with pytest.raises(InvalidInput, match="mixes single texts and pairs"):
        Texts.of([["a", "b"], "c"], "inputs")


@pytest.mark.parametrize(
    ("value", "param"),
    [(["a"] * 5, "inputs"), (["ok", "x" * 11], "inputs[1]"), ("x" * 11, "inputs"), ([["a", "x" * 11]], "inputs[0][1]")],
)
def test_limits_name_the_offending_input(value: str | list[str], param: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_limits(Texts.of(value, "inputs"), 4, 10)
    assert err.value.param == param
    assert err.value.message.endswith(
        "(BERTSERVE_MAX_INPUTS)" if param == "inputs" and isinstance(value, list) else "(BERTSERVE_MAX_INPUT_CHARS)"
    )


def test_coverage_says_which_inputs_were_cut_and_how_much_was_read() -> None:
    texts = Texts.of(["whole", "a long text cut short"], "inputs")
    assert coverage(texts, [None, 6]) == ([False, True], [5, 6])
    pairs = Texts.of([["query", "passage"], ["query", "a long passage"]], "inputs")
    assert coverage(pairs, [None, (5, 2)]) == ([False, True], [[5, 7], [5, 2]])


def test_param_paths_drop_union_branch_names() -> None:
    assert _param(["inputs", "list[str]", "2"]) == "inputs[2]"
    assert _param(["top_k"]) == "top_k"
    assert _param([]) is None
