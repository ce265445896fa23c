"""Every example in README.md answers as the README shows it: docs/examples.py's check, on real
servers (`bertserve serve` on the default models, one per setup a block asks for), its curl
commands run as typed and its python snippets (the openai and cohere clients) run whole.
`make readme-examples` rewrites the outputs when the service's answers change on purpose."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests import examples_script
from tests.e2e.procs import DEFAULT_MODELS, REPO

pytestmark = pytest.mark.e2e
DEFAULTS = ("all-minilm-l6-v2", "minilm-sentiment", "minilm-ner")


@pytest.fixture(scope="module")
def examples() -> ModuleType:
    missing = [m for m in DEFAULTS if not (DEFAULT_MODELS / m / "manifest.json").is_file()]
    if missing:
        pytest.fail(f"default models missing ({', '.join(missing)}): run `make models` first")
    return examples_script.load()


def test_every_readme_example_answers_as_shown(examples: ModuleType) -> None:
    results = examples.run(REPO / "README.md", DEFAULT_MODELS)
    kinds = [r.example.kind for r in results]
    assert kinds.count("curl") >= 10 and kinds.count("python") >= 2, kinds
    problems = examples.problems(results)
    assert not problems, (
        f"{len(problems)} README example(s) differ from what the server answers "
        "(`make readme-examples` rewrites them when the change is meant):\n" + "\n".join(problems)
    )


def test_a_changed_output_fails_the_check_and_a_marker_sets_the_server(examples: ModuleType, tmp_path: Path) -> None:
    """The README's tagger example, one label edited in its output, on a server that a marker gives
    an API key: the edit is the one difference, and a request without the key gets the 401."""
    readme = (REPO / "README.md").read_text()
    tagger = next(e for e in examples.parse(readme).examples if "/classify/tokens" in e.command)
    command = readme.split("\n")[tagger.line - 1 : tagger.span[0]]
    command[0] = command[0].replace("curl -s ", "curl -s -H 'Authorization: Bearer secret' ", 1)
    doctored = [line.replace('"label":"PERSON"', '"label":"NORP"', 1) for line in tagger.output]
    assert doctored != tagger.output
    doc = tmp_path / "doc.md"
    marker = "<!-- example: env BERTSERVE_API_KEYS=secret -->"
    doc.write_text("\n".join([marker, "```", *command, *doctored, "$ curl -s localhost:8000/models", "```", ""]))
    entities, refused = examples.run(doc, DEFAULT_MODELS)
    assert entities.problems == ['entities[0][0].label: README "NORP", the answer "PERSON"']
    assert examples.problems([entities], doc)[0].startswith(f"{doc}:3: $ curl -s -H 'Authorization: Bearer secret' ")
    assert json.loads(entities.actual[-1])["entities"][0][0]["label"] == "PERSON"  # what --write would put back
    (body,) = refused.actual
    assert json.loads(body)["error"]["type"] == "unauthorized"
