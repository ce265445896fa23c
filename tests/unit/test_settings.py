"""Every setting is checked for type and range when the process starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.server import settings_error
from service.settings import Settings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("log_level", "loud"),
        ("port", 70000),
        ("max_batch_size", 0),
        ("request_timeout_s", float("nan")),
        ("request_timeout_s", float("inf")),
        ("min_batch_fill", 1.5),
        ("provider", "tpu"),
        ("max_wait_ms", -1),
        ("host", ""),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**{field: value})
    line = settings_error(caught.value)
    assert f"BERTSERVE_{field.upper()}" in line and "\n" not in line


def test_log_level_is_case_insensitive() -> None:
    assert Settings(log_level="WARNING").log_level == "warning"


def test_api_keys_file_must_be_readable(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(api_keys_file=tmp_path / "missing")
    assert "No such file" in settings_error(caught.value)
    keys = tmp_path / "keys"
    keys.write_text("# ops\nk1\n\nk2\n")
    assert Settings(api_keys="k0", api_keys_file=keys).all_api_keys() == ["k0", "k1", "k2"]


def _body(strings: int, chars: int, pairs: bool, char: str = "e") -> bytes:
    """The largest request the limits admit, as Python's json writes it by default (a non-ASCII
    character as \\uXXXX), with a model name and options."""
    text = char * chars
    inputs = [[text, text]] * (strings // 2) if pairs else [text] * strings
    return json.dumps({"inputs": inputs, "model": "m" * 200, "truncate": True, "top_k": 3}, indent=1).encode()


def test_the_default_body_limit_fits_every_request_the_other_limits_admit() -> None:
    small = Settings(max_inputs=8, max_rerank_texts=4, max_input_chars=1000)
    for body in (_body(16, 1000, pairs=True), _body(5, 1000, pairs=False)):
        assert len(body) <= small.body_limit
    defaults = Settings()
    largest = _body(defaults.max_rerank_texts + 1, defaults.max_input_chars, pairs=False)
    assert len(largest) <= defaults.body_limit < 2 * len(largest)  # fits, and not far beyond


def test_text_escaped_as_unicode_escapes_meets_the_body_limit_first() -> None:
    """Six bytes a character: the README says this limit binds for such text."""
    defaults = Settings()
    escaped = _body(defaults.max_inputs, defaults.max_input_chars, pairs=False, char="\u00e9")
    assert len(escaped) > defaults.body_limit


def test_the_body_limit_follows_the_other_limits_unless_set() -> None:
    assert Settings(max_input_chars=40_000).body_limit > Settings().body_limit
    assert Settings(max_inputs=1000).body_limit > Settings().body_limit  # 2,000 strings in pairs
    assert Settings(max_body_bytes=1000).body_limit == 1000
