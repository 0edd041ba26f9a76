"""Ceilometer v2 simple queries (``q.field/q.op/q.value``), evaluated the same way on every backend.

Filters on what identifies a series (meter, resource, project, user, source,
type, unit, ``resource_metadata.*``) are evaluated here in Python on the small
series catalogue, so SQLite and PostgreSQL cannot disagree about JSON typing
or collation. Only the time range and per-sample fields reach SQL.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, field_validator

from telemetry.timeutil import parse_timestamp

Op = Literal["eq", "ne", "lt", "le", "gt", "ge"]
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt,
    "le": operator.le, "gt": operator.gt, "ge": operator.ge,
}
SQL_OPS = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}

#: Ceilometer spells the same field several ways across its v2 models.
ALIASES = {
    "resource": "resource_id", "project": "project_id", "user": "user_id",
    "counter_name": "meter", "name": "meter", "meter_name": "meter",
    "type": "counter_type", "unit": "counter_unit", "volume": "counter_volume",
    "id": "message_id", "start": "timestamp", "end": "timestamp",
}
SERIES_FIELDS = {"meter", "counter_type", "counter_unit", "resource_id", "project_id", "user_id", "source"}
SAMPLE_FIELDS = {"counter_volume", "message_id"}
GROUPBY_FIELDS = {"resource_id", "project_id", "user_id", "source"}


class SampleQueryError(ValueError):
    """A query the store cannot answer; the message names the field."""


def normalise_field(name: str) -> str:
    name = name.strip()
    for prefix in ("resource_metadata.", "metadata."):
        if name.startswith(prefix):
            return "metadata." + name[len(prefix):]
    return ALIASES.get(name, name)


def coerce(value: Any, type_: str | None = None) -> Any:
    """Ceilometer's typing of a query value: the declared type, else int, float, bool, string in turn."""
    if not isinstance(value, str):
        return value
    if type_ in ("string",):
        return value
    if type_ in ("integer", "int"):
        return int(value)
    if type_ in ("float", "double"):
        return float(value)
    if type_ in ("boolean", "bool"):
        return value.strip().lower() in ("true", "1", "yes")
    if type_ == "datetime":
        return parse_timestamp(value)
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    if value in ("True", "False", "true", "false"):
        return value.lower() == "true"
    return value


class QueryTerm(BaseModel):
    field: str
    op: Op = "eq"
    value: Any
    type: str | None = None

    @field_validator("field")
    @classmethod
    def _norm(cls, v: str) -> str:
        v = normalise_field(v)
        if not (v in SERIES_FIELDS or v in SAMPLE_FIELDS or v == "timestamp"
                or (v.startswith("metadata.") and len(v) > 9)):
            raise ValueError(f"cannot query on field {v!r}")
        return v

    @field_validator("op", mode="before")
    @classmethod
    def _op(cls, v: Any) -> Any:
        return (v or "eq").lower() if isinstance(v, str) else v

    def typed(self) -> Any:
        try:
            return coerce(self.value, self.type)
        except ValueError as exc:
            raise SampleQueryError(f"q.value {self.value!r} for {self.field} is not a {self.type}: {exc}") from None


def compare(actual: Any, op: str, expected: Any) -> bool:
    """Numbers compare as numbers, everything else as text; a missing field matches only ``ne``."""
    if actual is None:
        return op == "ne"
    num = (int, float)
    if isinstance(expected, num) and not isinstance(expected, bool):
        if isinstance(actual, str):
            try:
                actual = float(actual)
            except ValueError:
                return op == "ne"
        elif not isinstance(actual, num):
            return op == "ne"
    elif isinstance(expected, bool):
        actual = actual if isinstance(actual, bool) else str(actual).lower() == "true"
    else:
        actual, expected = str(actual), str(expected)
    try:
        return OPS[op](actual, expected)
    except TypeError:
        return False


def metadata_value(metadata: dict[str, Any], path: str) -> Any:
    """``a.b`` looks in nested dicts first, then for a flat key named ``a.b`` (both occur in OpenStack)."""
    if path in metadata:
        return metadata[path]
    cur: Any = metadata
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def to_ms(value: Any) -> int:
    ts = value if isinstance(value, datetime) else parse_timestamp(value)
    return int(round(ts.timestamp() * 1000))


class SampleQuery:
    """A parsed query: series terms, a half-open time range in ms and per-sample terms."""

    def __init__(self, terms: Iterable[QueryTerm] = (), meter: str | None = None) -> None:
        self.series_terms: list[tuple[str, str, Any]] = []
        self.sample_terms: list[tuple[str, str, Any]] = []
        self.lo: int | None = None  # inclusive, ms
        self.hi: int | None = None  # exclusive, ms
        self.start: int | None = None  # as given: the origin of period buckets
        self.end: int | None = None
        if meter is not None:
            self.series_terms.append(("meter", "eq", meter))
        for t in terms:
            self.add(t)

    def add(self, t: QueryTerm) -> None:
        if t.field == "timestamp":
            try:
                ms = to_ms(t.value)
            except ValueError as exc:
                raise SampleQueryError(f"timestamp: {exc}") from None
            if t.op in ("ge", "gt", "eq"):
                lo = ms + (1 if t.op == "gt" else 0)
                self.lo = lo if self.lo is None else max(self.lo, lo)
                self.start = ms if self.start is None else max(self.start, ms)
            if t.op in ("lt", "le", "eq"):
                hi = ms + (0 if t.op == "lt" else 1)
                self.hi = hi if self.hi is None else min(self.hi, hi)
                self.end = ms if self.end is None else min(self.end, ms)
            if t.op == "ne":
                raise SampleQueryError("timestamp: op ne is not supported (use a range)")
        elif t.field in SAMPLE_FIELDS:
            self.sample_terms.append((t.field, t.op, t.typed() if t.field != "message_id" else str(t.value)))
        else:
            self.series_terms.append((t.field, t.op, t.typed() if t.field.startswith("metadata.") else t.value))

    @property
    def meter(self) -> str | None:
        for f, op, v in self.series_terms:
            if f == "meter" and op == "eq":
                return str(v)
        return None

    def equalities(self) -> dict[str, str]:
        """``eq`` terms on indexed series columns, which the backend may push into SQL."""
        return {f: str(v) for f, op, v in self.series_terms if op == "eq" and f in SERIES_FIELDS}

    def matches_series(self, s: Any) -> bool:
        for f, op, v in self.series_terms:
            actual = metadata_value(s.metadata, f[9:]) if f.startswith("metadata.") else getattr(s, f)
            if f.startswith("metadata."):
                if not compare(actual, op, v):
                    return False
            elif not compare(actual, op, str(v)):
                return False
        return True
