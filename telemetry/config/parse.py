"""The parse stage section, with the processing steps that run after grok.

Steps use Logstash's filter vocabulary (drop, mutate, kv, dissect, json,
date, and ``if`` on a field) so a Logstash pipeline's filter block reads
across almost word for word. Each is validated here, at load: a bad regex, a
dissect mapping without delimiters or an unknown date pattern is an error
naming the step's path (``parse.types.haproxy.steps.1.mutate.gsub``), never a
surprise on the first line.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from telemetry.config.base import Duration, Section
from telemetry.syslog_programs import DEFAULT_PROGRAMS

#: Fields a step may neither remove nor rename: every event has them, with their type.
PROTECTED = frozenset({"id", "@timestamp", "tags"})


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


class Condition(Section):
    """A test on one field: exactly one of ``equals``, ``matches``, ``exists``, ``in``."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    field: str = Field(description="Field name ([a][b] for nested)")
    equals: str | int | float | bool | None = Field(None, description="The field equals this value")
    matches: str | None = Field(None, description="The field (as text) matches this regular expression")
    exists: bool | None = Field(None, description="The field is present (true) or absent (false)")
    in_: list[str | int | float | bool] | None = Field(None, alias="in", description="The field is one of these")
    negate: bool = Field(False, description="Invert the test")

    @field_validator("matches")
    @classmethod
    def _matches(cls, v: str | None) -> str | None:
        return None if v is None else _regex(v)

    @model_validator(mode="after")
    def _one(self) -> Condition:
        given = [n for n in ("equals", "matches", "exists", "in_") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("a condition needs exactly one of equals, matches, exists, in")
        return self


class DropStep(Section):
    """Discard the event (counted in telemetry_parse_dropped_total)."""


class MutateStep(Section):
    """Logstash's mutate, in its order: rename, copy, replace, convert, gsub, case, strip, split, then adds and removes."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    rename: dict[str, str] = Field(default_factory=dict, description="old name: new name")
    copy_: dict[str, str] = Field(default_factory=dict, alias="copy", description="source: destination")
    replace: dict[str, str] = Field(default_factory=dict, description="field: value (%{field} references expanded)")
    convert: dict[str, Literal["integer", "float", "string", "boolean"]] = Field(default_factory=dict)
    gsub: list[tuple[str, str, str]] = Field(default_factory=list, description="[field, regex, replacement] triples")
    uppercase: list[str] = Field(default_factory=list)
    lowercase: list[str] = Field(default_factory=list)
    strip: list[str] = Field(default_factory=list)
    split: dict[str, str] = Field(default_factory=dict, description="field: separator (the field becomes a list)")
    add_field: dict[str, str] = Field(default_factory=dict, description="field: value (%{field} references expanded)")
    add_tag: list[str] = Field(default_factory=list)
    remove_tag: list[str] = Field(default_factory=list)
    remove_field: list[str] = Field(default_factory=list)

    @field_validator("gsub")
    @classmethod
    def _gsub(cls, v: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        for _, pattern, _ in v:
            _regex(pattern)
        return v

    @model_validator(mode="after")
    def _protected(self) -> MutateStep:
        touched = set(self.rename) | set(self.rename.values()) | set(self.remove_field)
        bad = touched & PROTECTED
        if bad:
            raise ValueError(f"{', '.join(sorted(bad))} cannot be renamed or removed")
        return self


class KvStep(Section):
    """Logstash's kv: ``key=value`` pairs of a field become fields."""

    source: str = Field("message", description="Field holding the pairs")
    target: str | None = Field(None, description="Put the pairs under this field instead of the top level")
    field_split: str = Field(" ", min_length=1, description="Characters that separate pairs")
    value_split: str = Field("=", min_length=1, description="Characters that separate a key from its value")
    prefix: str = Field("", description="Prepended to every key")
    include_keys: list[str] = Field(default_factory=list, description="Only these keys (empty: all)")
    exclude_keys: list[str] = Field(default_factory=list)
    trim_value: str = Field("", description="Characters stripped from both ends of each value")
    max_keys: int = Field(100, ge=1, le=10_000, description="Pairs past this many are ignored")


class DissectStep(Section):
    """Logstash's dissect: split a field on literal delimiters."""

    mapping: dict[str, str] = Field(min_length=1, description='field: "%{a} %{b} [%{c}]"')
    append_separator: str = Field(" ", description="Joins %{+field} parts")
    tag_on_failure: list[str] = Field(default_factory=lambda: ["_dissectfailure"])

    @field_validator("mapping")
    @classmethod
    def _compile(cls, v: dict[str, str]) -> dict[str, str]:
        from telemetry.textformats import Dissector

        for pattern in v.values():
            Dissector(pattern)
        return v


class JsonStep(Section):
    """Decode a field holding a JSON object (bounded in depth and field count)."""

    source: str = Field("message", description="Field holding the JSON text")
    target: str | None = Field(None, description="Put the object under this field instead of the top level")
    tag_on_failure: list[str] = Field(default_factory=lambda: ["_jsonparsefailure"])


class DateStep(Section):
    """Logstash's date: read a field with one of the formats into ``@timestamp`` (or ``target``)."""

    match: list[str] = Field(min_length=2, description="[field, format, format...]: ISO8601, UNIX, UNIX_MS or Joda")
    target: str = Field("@timestamp", description="Where the instant goes")
    timezone: str | None = Field(None, description="Zone of times printed without one (default: parse.timezone)")
    tag_on_failure: list[str] = Field(default_factory=lambda: ["_dateparsefailure"])

    @field_validator("match")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        from telemetry.textformats import compile_format

        for fmt in v[1:]:
            compile_format(fmt)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return None if v is None else _check_zone(v)


_KINDS = ("drop", "mutate", "kv", "dissect", "json_", "date", "if_")


class Step(Section):
    """One processing step: exactly one of drop, mutate, kv, dissect, json, date, or ``if`` with then/else."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    drop: DropStep | None = None
    mutate: MutateStep | None = None
    kv: KvStep | None = None
    dissect: DissectStep | None = None
    json_: JsonStep | None = Field(None, alias="json")
    date: DateStep | None = None
    if_: Condition | None = Field(None, alias="if", description="Run `then` when the condition holds, else `else`")
    then: list[Step] = Field(default_factory=list)
    else_: list[Step] = Field(default_factory=list, alias="else")

    @model_validator(mode="before")
    @classmethod
    def _null_steps(cls, data: Any) -> Any:
        # `- drop:` (no options) is read as {"drop": None}: the step with its defaults.
        if isinstance(data, dict):
            return {k: ({} if v is None and k in ("drop", "mutate", "json", "json_") else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _one(self) -> Step:
        given = [k.rstrip("_") for k in _KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a step needs exactly one of drop, mutate, kv, dissect, json, date, if (got {given or 'none'})")
        if given[0] != "if" and (self.then or self.else_):
            raise ValueError("then/else belong to an `if` step")
        return self


class TypeParse(Section):
    """Per log type: the steps its events go through (before the global ones)."""

    steps: list[Step] = Field(default_factory=list)


def _check_zone(v: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (use an IANA name such as UTC or Europe/Paris)") from None
    return v


class ParseConfig(Section):
    """Grok parsing of raw log entries into events (the server's parse stage)."""

    enabled: bool = Field(True, description="Run the parse stage in the server")
    workers: int = Field(
        1, ge=0, le=32, description="Child processes that parse, each with a core of its own (a batch is shared "
        "among them); 0 parses in the daemon's own process. One per core the daemon may use beyond its first",
    )
    patterns_dirs: list[str] = Field(
        default_factory=list,
        description="Extra folders of pattern files in Logstash's format (NAME regex per line), loaded after "
                    "the built-in parsers/ and overriding its names",
    )
    timeout: Duration = Field(
        0.25, gt=0, description="Time one entry may spend in grok; past it the event is tagged _groktimeout"
    )
    timezone: str = Field("UTC", description="Zone of timestamps printed without one (IANA name, e.g. Europe/Paris)")
    steps: list[Step] = Field(default_factory=list, description="Processing steps every event goes through, after grok")
    types: dict[str, TypeParse] = Field(
        default_factory=dict, description="Per log type (or alias): steps run before the global ones"
    )
    syslog_programs: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_PROGRAMS),
        description="Syslog app name (shell pattern, first match wins) -> the type that parses its message; "
                    "entries given here come before the defaults",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _check_zone(v)

    @field_validator("syslog_programs")
    @classmethod
    def _programs(cls, v: dict[str, str]) -> dict[str, str]:
        merged = dict(v)
        for k, t in DEFAULT_PROGRAMS.items():
            merged.setdefault(k, t)
        return merged
