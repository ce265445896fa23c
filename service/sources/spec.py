"""What the user asked to serve: a source and its per-model overrides, from the command line
(`--model SOURCE --task rerank ...`: an option applies to the --model before it) or from
BERTSERVE_MODEL_SOURCES (`SOURCE;task=rerank;int8=false,SOURCE2`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from service.kinds import MODEL_KINDS, ModelKind
from service.sources.detect import SourceError

BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class Source:
    """`None`: not given; the checkpoint (task) or the export's defaults (the rest) decide."""

    text: str
    task: ModelKind | None = None
    name: str | None = None
    max_length: int | None = None
    pairs: bool | None = None
    int8: bool | None = None
    fp16: bool | None = None
    given: tuple[str, ...] = field(default=(), compare=False)

    def overrides(self) -> list[str]:
        """The options given, as the command line spells them."""
        return [f"--{f.name.replace('_', '-')}" for f in fields(self) if f.name in self.given]


OPTIONS = {f.name for f in fields(Source)} - {"text", "given"}


def with_option(source: Source, key: str, value: Any) -> Source:
    return replace(source, **{key: value}, given=(*source.given, key))


def parse_entry(entry: str) -> Source:
    """`SOURCE[;key=value...]`, the environment's form of one --model and its options."""
    text, *options = [part.strip() for part in entry.split(";")]
    if not text:
        raise SourceError(f"BERTSERVE_MODEL_SOURCES: empty source in {entry!r}")
    source = Source(text)
    for option in options:
        key, _, value = option.partition("=")
        key = key.strip().replace("-", "_")
        if key not in OPTIONS:
            raise SourceError(f"BERTSERVE_MODEL_SOURCES: unknown option {key!r} in {entry!r} ({', '.join(OPTIONS)})")
        source = with_option(source, key, _value(key, value.strip() or "true", entry))
    return source


def _value(key: str, value: str, entry: str) -> Any:
    if key == "task":
        if value not in MODEL_KINDS:
            raise SourceError(f"BERTSERVE_MODEL_SOURCES: task {value!r} in {entry!r}: one of {', '.join(MODEL_KINDS)}")
        return value
    if key == "max_length":
        if not value.isdigit() or int(value) < 1:
            raise SourceError(f"BERTSERVE_MODEL_SOURCES: max-length {value!r} in {entry!r} is not a positive integer")
        return int(value)
    if key == "name":
        return value
    if value.lower() not in BOOLEANS:
        raise SourceError(f"BERTSERVE_MODEL_SOURCES: {key}={value!r} in {entry!r}: true or false")
    return BOOLEANS[value.lower()]


def parse_entries(text: str) -> list[Source]:
    return [parse_entry(e) for e in text.split(",") if e.strip()]
