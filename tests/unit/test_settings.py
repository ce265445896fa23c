"""Every setting is checked for type and range when the process starts."""

from __future__ import annotations

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
