"""The README's configuration table must list every setting, with its real default."""

from pathlib import Path

from service.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`BERTSERVE_{name.upper()}`" in README, f"BERTSERVE_{name.upper()} missing from README"


def test_documented_defaults_match() -> None:
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip(" `")
        for line in README.splitlines()
        if line.startswith("| `BERTSERVE_")
    }
    for name, field in Settings.model_fields.items():
        default = field.default
        documented = rows[f"BERTSERVE_{name.upper()}"]
        if isinstance(default, bool):
            assert documented == str(default).lower()
        elif isinstance(default, int | float | str | Path):
            assert (
                float(documented) == float(default) if isinstance(default, int | float) else documented == str(default)
            )
