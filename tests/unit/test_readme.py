"""The README's configuration table must list every setting, with its real default."""

from pathlib import Path

from pydantic_core import PydanticUndefined

from service.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _rows() -> dict[str, str]:
    return {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip(" `")
        for line in README.splitlines()
        if line.startswith("| `BERTSERVE_")
    }


def test_every_setting_is_documented() -> None:
    rows = _rows()
    for name in Settings.model_fields:
        assert f"BERTSERVE_{name.upper()}" in rows, f"BERTSERVE_{name.upper()} missing from README"
    assert set(rows) == {f"BERTSERVE_{n.upper()}" for n in Settings.model_fields}, "README documents a ghost"


def _written(value: object) -> str:
    """A default as the README writes it: None is unset, an empty list is empty."""
    if value is None:
        return "unset"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "empty"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_documented_defaults_match() -> None:
    rows = _rows()
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default is PydanticUndefined else field.default  # type: ignore[call-arg,misc]
        documented = rows[f"BERTSERVE_{name.upper()}"]
        if isinstance(default, int | float) and not isinstance(default, bool):
            assert float(documented.replace(",", "")) == float(default), name
        else:
            assert documented == _written(default), name


def test_log_levels_are_documented() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `BERTSERVE_LOG_LEVEL`"))
    for level in ("debug", "info", "warning", "error", "critical"):
        assert f"`{level}`" in row
