"""Pattern files in Logstash's format, and the per-type match lists.

A pattern file holds ``NAME regex`` per line; ``#`` starts a comment and
blank lines are skipped, exactly as Logstash's grok filter reads its
``patterns_dir``, so the files of logstash-patterns-core work when dropped in.
Later files override earlier names (an operator's folder overrides ours).

Which expressions apply to which log type lives in ``parsers/types.yaml``:
an ordered match list per type, tried with ``break_on_match``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from telemetry.content import content_path

__all__ = ["PatternSet", "TypeDef", "builtin_dir", "load_pattern_dirs", "load_pattern_file", "load_types"]

#: jls-grok's line format: a name, whitespace, the rest of the line is the regex.
_LINE = re.compile(r"^\s*(\S+)\s+(.*)$")


def builtin_dir() -> Path:
    return content_path("parsers")


def parse_pattern_text(text: str, source: str = "<text>") -> dict[str, str]:
    """``NAME regex`` lines to a dict; like Logstash, a line with no regex after its name is skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LINE.match(line.rstrip("\r\n"))
        if m is not None:
            out[m.group(1)] = m.group(2)
    return out


def load_pattern_file(path: Path) -> dict[str, str]:
    return parse_pattern_text(path.read_text(encoding="utf-8"), str(path))


def pattern_files(folder: Path, glob: str = "*") -> list[Path]:
    """Regular, non-hidden files of a folder in name order (Logstash loads every file)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"patterns folder not found: {folder}")
    return sorted(p for p in folder.glob(glob) if p.is_file() and not p.name.startswith("."))


def load_pattern_dirs(folders: Iterable[Path | str], builtin: bool = True) -> dict[str, str]:
    """Our library (``parsers/*.grok``) first, then each folder in order, later names winning."""
    patterns: dict[str, str] = {}
    if builtin:
        for f in pattern_files(builtin_dir(), "*.grok"):
            patterns.update(load_pattern_file(f))
    for folder in folders:
        for f in pattern_files(Path(folder)):
            patterns.update(load_pattern_file(f))
    return patterns


class TypeDef(BaseModel):
    """One log type: its match list, tried in order, and how its fields are normalised."""

    match: list[str] = Field(min_length=1, description="Grok expressions, first match wins")
    description: str = ""
    break_on_match: bool = True
    tag_on_failure: list[str] = Field(default_factory=lambda: ["_grokparsefailure"])


class TypesFile(BaseModel):
    types: dict[str, TypeDef]
    aliases: dict[str, str] = Field(default_factory=dict)


def load_types(path: Path | None = None) -> TypesFile:
    path = path or builtin_dir() / "types.yaml"
    try:
        return TypesFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from None


class PatternSet:
    """The loaded library plus the type table: what a Parser is built from."""

    def __init__(self, patterns_dirs: Iterable[Path | str] = (), types_file: Path | None = None) -> None:
        self.patterns = load_pattern_dirs(patterns_dirs)
        table = load_types(types_file)
        self.types = table.types
        self.aliases = table.aliases

    def typedef(self, name: str) -> TypeDef | None:
        return self.types.get(self.aliases.get(name, name))

    def canonical(self, name: str) -> str:
        return self.aliases.get(name, name)
