"""The README's configuration table must list every setting, with its real default; and every
reference in the documents (links, module and test paths, docstrings' sections) must resolve."""

import re
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
    """A default as the README writes it: None is unset, an empty list (or mapping) is empty."""
    if value is None:
        return "unset"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "empty"
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


# The documents link to each other, name modules and tests, and docstrings point into them by
# heading: each such reference must lead somewhere, so a moved module or a renamed section
# fails here rather than in a reader's hands.
ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "models" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _headings(doc: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in doc.read_text().splitlines() if re.match(r"#{1,6} ", line)]


def _anchors(doc: Path) -> set[str]:
    return {_slug(heading) for heading in _headings(doc)}


def test_slug_follows_github() -> None:
    assert _slug("Sessions: instances and the fast lane") == "sessions-instances-and-the-fast-lane"
    assert _slug("Tracing (OpenTelemetry)") == "tracing-opentelemetry"
    assert _slug("`POST /v1/embeddings` (OpenAI-compatible)") == "post-v1embeddings-openai-compatible"


def test_every_relative_link_leads_to_a_file_and_heading() -> None:
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            if not linked.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and anchor not in _anchors(linked):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def _outside_the_walk_through(doc: Path) -> str:
    """The text of a document without design.md's hypothetical task, whose files do not exist."""
    text = doc.read_text()
    start = text.find("### Walk-through")
    if start < 0:
        return text
    end = text.find("\n## ", start)
    return text[:start] + (text[end:] if end >= 0 else "")


def test_every_named_module_and_test_exists() -> None:
    missing = []
    for doc in DOCS:
        for path in re.findall(r"`((?:service|tests)/[\w./]+?)(?:::\w+)?`", _outside_the_walk_through(doc)):
            if not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, missing


def test_docstrings_point_at_headings_that_exist() -> None:
    """`(docs/design.md, "The direct path")` in a docstring or comment names a real section: a
    heading, or the part of one before its colon ("Instances" for "Instances: /classify ...")."""
    dangling = []
    for module in sorted((ROOT / "service").rglob("*.py")):
        for name, named in re.findall(r"(docs/\w+\.md), \"([^\"]+)\"", module.read_text()):
            doc = ROOT / name
            if not doc.exists() or not any(h == named or h.startswith(f"{named}:") for h in _headings(doc)):
                dangling.append(f"{module.relative_to(ROOT)}: {name}, {named!r}")
    assert not dangling, dangling
