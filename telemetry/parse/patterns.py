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
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from telemetry.content import content_path
from telemetry.parse.grok import GrokError
from telemetry.parse.onig import UntranslatableError, translate

__all__ = ["PatternSet", "TypeDef", "builtin_dir", "load_pattern_dirs", "load_pattern_file", "load_types"]

#: jls-grok's line format: a name, whitespace, the rest of the line is the regex.
_LINE = re.compile(r"^\s*(\S+)\s+(.*)$")


def builtin_dir() -> Path:
    return content_path("parsers")


def parse_pattern_text(text: str, source: str = "<text>") -> dict[str, str]:
    """``NAME regex`` lines to a dict; like Logstash, a line with no regex after its name is skipped.

    Each definition is translated from Oniguruma here (``onig.translate``), so a
    construct no Python engine can run fails at load, naming the file, the line,
    the pattern and the construct, whether or not anything references it yet.
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LINE.match(line.rstrip("\r\n"))
        if m is not None:
            try:
                translate(m.group(2))
            except UntranslatableError as exc:
                raise GrokError(f"{source}:{number}: pattern {m.group(1)}: {exc}") from None
            out[m.group(1)] = m.group(2)
    return out


def load_pattern_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GrokError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_pattern_text(text, str(path))


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
    """One log type: how its entries are read, and how its fields are normalised.

    ``codec: json`` entries are JSON objects (``telemetry.parse.jsonline``).
    Otherwise ``match`` is tried in order on the whole entry; a ``syslog`` type's
    lines start with a syslog header (read by the header list of types.yaml)
    and ``body`` parses the message behind it. A syslog listener reads the
    header itself, so then only ``body`` runs.
    """

    model_config = ConfigDict(extra="forbid")

    match: list[str] = Field(default_factory=list, description="Grok expressions, first match wins")
    body: list[str] = Field(default_factory=list, description="Grok expressions for the message after a syslog header")
    message_match: list[str] = Field(
        default_factory=list, description="Tried on the captured message; their captures are added, no match is no failure")
    syslog: bool = Field(False, description="Entries start with a syslog header (RFC 3164, 5424 or rsyslog's RFC 3339)")
    codec: Literal["grok", "json"] = "grok"
    description: str = ""
    break_on_match: bool = True
    tag_on_failure: list[str] = Field(default_factory=lambda: ["_grokparsefailure"])

    @model_validator(mode="after")
    def _readable(self) -> TypeDef:
        if self.codec == "grok" and not (self.match or self.syslog or self.body):
            raise ValueError("a grok type needs match, body or syslog: true")
        return self


class TypesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    types: dict[str, TypeDef]
    aliases: dict[str, str] = Field(default_factory=dict)
    syslog_header: list[str] = Field(min_length=1, description="Expressions reading a syslog header and its message")


#: libyaml's loader where PyYAML has it: the same documents, read in a tenth of the time (types.yaml
#: took 5.7 ms of every ``telemetry parse`` start with the pure-Python one).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_types(path: Path | None = None) -> TypesFile:
    path = path or builtin_dir() / "types.yaml"
    try:
        return TypesFile.model_validate(yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER))
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from None


class PatternSet:
    """The loaded library plus the type table: what a Parser is built from."""

    def __init__(self, patterns_dirs: Iterable[Path | str] = (), types_file: Path | None = None) -> None:
        self.patterns = load_pattern_dirs(patterns_dirs)
        table = load_types(types_file)
        self.types = table.types
        self.aliases = table.aliases
        self.syslog_header = table.syslog_header

    def typedef(self, name: str) -> TypeDef | None:
        return self.types.get(self.aliases.get(name, name))

    def canonical(self, name: str) -> str:
        return self.aliases.get(name, name)
