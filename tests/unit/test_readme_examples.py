"""docs/examples.py without a server: it finds every example in README.md, and its comparison
reports a README output that was changed while it lets through what a new run or a rebuilt
fine-tuned model changes (the e2e test, tests/e2e/test_readme_examples.py, runs them)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import examples_script

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
examples = examples_script.load()
PARSED = examples.parse(README)


def _example(path: str) -> Any:
    """The README's first curl example on this route."""
    return next(e for e in PARSED.examples if e.kind == "curl" and f"localhost:8000{path} " in e.command)


def _check(example: Any, actual: list[str]) -> list[str]:
    """How `actual` differs from what the README shows for `example`, as --check compares them."""
    include = examples.includes_headers(example.command)
    shown = examples.split_shown(actual, include)
    tol = examples.tolerance(examples.answering_model(example.command, shown))
    problems: list[str] = examples.compare(example.output, actual, include, tol)
    return problems


def _doctor(example: Any, change: Callable[[Any], None]) -> list[str]:
    """The example's output with its JSON body changed by `change` (a function of the parsed body)."""
    lines = list(example.output)
    body = json.loads(lines[-1])
    change(body)
    return [*lines[:-1], json.dumps(body, separators=(",", ":"), ensure_ascii=False)]


def test_every_curl_line_of_the_readme_is_run_or_marked_not_run() -> None:
    lines = README.split("\n")
    curl = {i + 1 for i, line in enumerate(lines) if line.startswith("$ curl")}
    run = {e.line for e in PARSED.examples if e.kind == "curl" and e.command.startswith("curl")}
    skipped = {n for first, last, _ in PARSED.skipped for n in range(first, last + 1)}
    assert curl - skipped == run
    assert len(run) >= 10
    for first, _, why in PARSED.skipped:
        assert why != "no reason given", f"README.md:{first}: a block not run must say why"


def test_every_python_block_is_run_and_shows_what_it_prints() -> None:
    python = [e for e in PARSED.examples if e.kind == "python"]
    assert len(python) == README.count("```python") >= 2
    for example in python:
        assert example.span is not None and example.output, f"README.md:{example.line}: no output shown"
        compile(example.command, f"README.md:{example.line}", "exec")


def test_a_command_continues_over_a_backslash_and_an_open_quote() -> None:
    rerank = _example("/rerank")
    args = shlex.split(rerank.command)
    body = json.loads(args[args.index("-d") + 1])  # the quoted JSON spans two lines
    assert len(body["texts"]) == 3
    assert examples.includes_headers(rerank.command)
    assert not examples.includes_headers(_example("/classify/tokens").command)
    assert rerank.output[0] == "HTTP/1.1 200 OK"


def test_markers_set_the_server_a_block_needs() -> None:
    marker = examples._marker("models a b=a; building c=embed:queued; env X=1 Y='two words'", 7)
    assert marker.setup.models == (("a", "a"), ("b", "a"))
    assert marker.setup.building == (("c", "embed", "queued"),)
    assert marker.setup.env == (("X", "1"), ("Y", "two words"))
    assert examples._marker("not run: it needs a GPU", 1).not_run == "it needs a GPU"
    with pytest.raises(ValueError, match="line 3: unknown example directive"):
        examples._marker("serve faster", 3)
    with pytest.raises(ValueError, match="line 1: an example marker must come just before its code block"):
        examples.parse("<!-- example: models a -->\nsome text\n```\n$ curl -s localhost:8000/models\n```\n")
    several = next(e for e in PARSED.examples if "several classify models" in "".join(e.output))
    assert ("my-classifier", "minilm-sentiment") in several.setup.models


def test_a_doctored_label_span_or_token_count_is_reported() -> None:
    classify, tagger = _example("/classify"), _example("/classify/tokens")

    def swap(body: dict[str, Any]) -> None:
        body["predictions"][0][0]["label"] = "negative"

    assert _check(classify, _doctor(classify, swap)) == [
        'predictions[0][0].label: README "positive", the answer "negative"'
    ]

    def narrow(body: dict[str, Any]) -> None:
        body["entities"][0][0]["end"] = 8
        body["usage"]["input_tokens"] += 1

    assert _check(tagger, _doctor(tagger, narrow)) == [
        "entities[0][0].end: README 9, the answer 8",
        "usage.input_tokens: README 15, the answer 16",
    ]

    def lose(body: dict[str, Any]) -> None:
        del body["covered"]

    assert _check(tagger, _doctor(tagger, lose)) == ["the body: README has 'covered', the answer does not"]


def test_scores_of_a_fine_tuned_model_may_move_by_a_rebuild_but_not_further() -> None:
    classify = _example("/classify")

    def nudge(by: float) -> Callable[[Any], None]:
        def change(body: dict[str, Any]) -> None:
            body["predictions"][1][0]["score"] -= by

        return change

    assert _check(classify, _doctor(classify, nudge(0.03))) == []
    (problem,) = _check(classify, _doctor(classify, nudge(0.2)))
    assert problem.startswith("predictions[1][0].score: README ") and "(tolerance 0.05)" in problem


def test_the_embedding_models_numbers_must_hold_their_digits() -> None:
    embed = _example("/embed")

    def nudge(by: float) -> Callable[[Any], None]:
        def change(body: dict[str, Any]) -> None:
            body["embeddings"][0][2] += by

        return change

    assert _check(embed, _doctor(embed, nudge(1e-7))) == []
    (problem,) = _check(embed, _doctor(embed, nudge(1e-3)))
    assert problem.startswith("embeddings[0][2]: ") and "(tolerance 1e-05)" in problem


def test_values_that_change_on_every_run_are_not_differences() -> None:
    cohere, tokenize = _example("/v2/rerank"), _example("/tokenize")

    def new_id(body: dict[str, Any]) -> None:
        body["id"] = "00000000-0000-4000-8000-000000000000"

    assert _check(cohere, _doctor(cohere, new_id)) == []

    def token_id(body: list[Any]) -> None:  # a token's id is no request id
        body[0][1]["id"] += 1

    assert _check(tokenize, _doctor(tokenize, token_id)) == ["[0][1].id: README 6187, the answer 6188"]


def test_headers_shown_with_include_are_checked_and_the_elided_ones_are_not() -> None:
    rerank = _example("/rerank")
    status, model, elided, body = rerank.output
    assert elided == "..."
    answer = [status, model.replace("(cosine)", "(cross-encoder)"), "x-total-time: 1.234", elided, body]
    assert _check(rerank, answer) == [
        "header x-model: README 'all-minilm-l6-v2 (cosine)', the answer 'all-minilm-l6-v2 (cross-encoder)'"
    ]
    assert _check(rerank, ["HTTP/1.1 503 Service Unavailable", model, elided, body]) == [
        "status: README 'HTTP/1.1 200 OK', the answer 'HTTP/1.1 503 Service Unavailable'"
    ]
    assert _check(rerank, [status, elided, body]) == ["header x-model: not in the answer"]


def test_a_changed_readme_fails_the_check_naming_its_line(tmp_path: Path) -> None:
    """A README whose /classify output was edited, checked against the answer the real README shows."""
    original = _example("/classify")
    doctored_text = README.replace('"label":"negative"', '"label":"neutral"', 1)
    doctored = next(e for e in examples.parse(doctored_text).examples if e.line == original.line)
    result = examples.Result(doctored, original.output, _check(doctored, original.output))
    (report,) = examples.problems([result])
    assert report.startswith(f"README.md:{original.line}: $ curl -s localhost:8000/classify ")
    assert 'predictions[0][1].label: README "neutral", the answer "negative"' in report


def test_printed_output_is_compared_line_by_line_with_the_models_tolerance() -> None:
    (cohere,) = [e for e in PARSED.examples if e.kind == "python" and "cohere" in e.command]
    index, score = cohere.output[0].split()
    assert examples.compare(cohere.output, [f"{index} {float(score) + 1e-7}", *cohere.output[1:]], False, 1e-5) == []
    (problem,) = examples.compare(cohere.output, [f"{index} {float(score) + 0.01}", *cohere.output[1:]], False, 1e-5)
    assert problem.startswith("line 1: README ")
    (problem,) = examples.compare(cohere.output, cohere.output[:2], False, 1e-5)
    assert problem.startswith("README shows 3 lines, the answer has 2")


def test_write_replaces_only_the_output_lines(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("text\n\n```\n$ curl -s localhost:8000/health/live\nold\n$ curl -s localhost:8000/x\n```\nend\n")
    parsed = examples.parse(doc.read_text()).examples
    assert [e.output for e in parsed] == [["old"], []]
    results = [examples.Result(parsed[0], ['{"a":1}', "second"], ["x"]), examples.Result(parsed[1], ["new"], [])]
    examples.write(doc, results)
    assert doc.read_text().split("\n") == [
        "text",
        "",
        "```",
        "$ curl -s localhost:8000/health/live",
        '{"a":1}',
        "second",
        "$ curl -s localhost:8000/x",
        "new",
        "```",
        "end",
        "",
    ]
