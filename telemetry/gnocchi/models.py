"""Gnocchi's objects (archive policies and their rules, resource types, resources, metrics) as we keep them.

They are documents validated here once, whether they come from the API or
from the catalogue's database, and they render in Gnocchi's own JSON (times
as ``+00:00`` ISO strings, granularities as ``H:MM:SS``) so gnocchiclient,
Ceilometer, Aodh and Grafana read them as they read Gnocchi's.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from telemetry.timeutil import parse_timestamp

#: Gnocchi's aggregation methods; ``rate:X`` applies X to the differences of consecutive raw measures.
BASIC_METHODS = ("mean", "sum", "last", "max", "min", "std", "median", "first", "count")
PERCENTILE = re.compile(r"^([1-9][0-9]?)pct$")
DEFAULT_METHODS = ["mean", "min", "max", "sum", "std", "count"]
#: Gnocchi's UUID5 namespace for resource ids that are not UUIDs (gnocchi.utils.RESOURCE_ID_NAMESPACE).
RESOURCE_ID_NAMESPACE = uuid.UUID("0a7a15ff-aa13-4ac2-897c-9bdf30ce175b")
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_UNIT_SECONDS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
    "y": 365 * 86400, "year": 365 * 86400, "years": 365 * 86400,
}


class GnocchiError(Exception):
    """A refusal in Gnocchi's terms: the HTTP status and the ``description`` its clients match on."""

    def __init__(self, code: int, description: Any) -> None:
        super().__init__(description if isinstance(description, str) else str(description))
        self.code = code
        self.description = description


def valid_method(name: str) -> bool:
    base = name[5:] if name.startswith("rate:") else name
    return base in BASIC_METHODS or PERCENTILE.match(base) is not None


def to_seconds(value: Any, what: str = "timespan") -> float:
    """Gnocchi's spans: seconds as a number or text, ``5 minutes``, ``1 day 2h``, ``1:00:00``, ``30 days, 0:00:00``."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            return float(text)
        except ValueError:
            pass
        total = 0.0
        days, _, clock = text.rpartition(",") if "," in text else ("", "", text)
        if days:
            m = re.fullmatch(r"\s*(\d+)\s+days?\s*", days)
            if m is None:
                raise GnocchiError(400, f"Invalid {what}: {value!r}")
            total += int(m.group(1)) * 86400
        clock = clock.strip()
        if re.fullmatch(r"\d+:\d{2}:\d{2}(\.\d+)?", clock):
            h, mi, s = clock.split(":")
            return total + int(h) * 3600 + int(mi) * 60 + float(s)
        pos, matched = 0, False
        for m in _SPAN.finditer(clock):
            if clock[pos:m.start()].strip(" ,") or m.group(2) not in _UNIT_SECONDS:
                raise GnocchiError(400, f"Invalid {what}: {value!r}")
            total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos, matched = m.end(), True
        if matched and not clock[pos:].strip():
            return total
    raise GnocchiError(400, f"Invalid {what}: {value!r}")


def to_timestamp(value: Any, what: str = "timestamp") -> datetime:
    """Gnocchi's timestamps: ISO 8601, epoch seconds (number or text), ``now`` or a ``-1 hour`` offset from now."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 19 and text[4] == "-" and text[10] in "T ":  # the common case: ISO 8601
            try:
                ts = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
                return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
            except ValueError:
                pass
        if text == "now":
            return datetime.now(timezone.utc)
        if text.startswith("-") and not text[1:].replace(".", "", 1).isdigit():
            return datetime.now(timezone.utc) - timedelta(seconds=to_seconds(text[1:], what))
        try:
            return datetime.fromtimestamp(float(text), timezone.utc)
        except ValueError:
            pass
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError, OSError):
        raise GnocchiError(400, f"Unable to parse {what} {value!r}") from None


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(timezone.utc).isoformat()


def span_text(seconds: float) -> str:
    """A granularity or timespan as Gnocchi prints it (``str(timedelta)``)."""
    return str(timedelta(seconds=seconds))


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyItem(_Doc):
    """One granularity of an archive policy; any two of the three given, the third is derived."""

    granularity: float
    points: int
    timespan: float

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a definition item is an object with granularity, points and/or timespan")
        extra = set(data) - {"granularity", "points", "timespan"}
        if extra:
            raise GnocchiError(400, f"Invalid input: extra keys not allowed @ data['definition'][...]['{sorted(extra)[0]}']")
        g = to_seconds(data["granularity"], "granularity") if data.get("granularity") is not None else None
        ts = to_seconds(data["timespan"], "timespan") if data.get("timespan") is not None else None
        p = data.get("points")
        if g is None:
            if p is None or ts is None:
                raise GnocchiError(400, "Invalid input: definition needs granularity with points or timespan")
            g = ts / int(p)
        if g <= 0:
            raise GnocchiError(400, "Granularity should be > 0")
        if p is None:
            if ts is None:
                raise GnocchiError(400, "Invalid input: definition needs points or timespan beside granularity")
            p = int(ts // g)
        p = int(p)
        if p <= 0:
            raise GnocchiError(400, "Number of points should be > 0")
        if ts is not None and abs(ts - g * p) > 1e-6:
            raise GnocchiError(400, "timespan ≠ granularity × points")
        return {"granularity": g, "points": p, "timespan": g * p}

    def render(self) -> dict[str, Any]:
        return {"granularity": span_text(self.granularity), "points": self.points,
                "timespan": span_text(self.timespan)}


class ArchivePolicy(_Doc):
    name: str = Field(min_length=1, max_length=255)
    back_window: int = Field(0, ge=0)
    definition: list[PolicyItem] = Field(min_length=1)
    aggregation_methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))

    @field_validator("aggregation_methods", mode="before")
    @classmethod
    def _methods(cls, v: Any) -> Any:
        """Gnocchi's ``-method`` / ``+method`` / ``*`` edit the default set."""
        if v is None:
            return list(DEFAULT_METHODS)
        if not isinstance(v, list):
            raise ValueError("aggregation_methods must be a list")
        out: list[str] = list(DEFAULT_METHODS) if all(str(m)[:1] in "+-" for m in v) and v else []
        for m in map(str, v):
            if m == "*":
                out = [*BASIC_METHODS, *(f"rate:{b}" for b in BASIC_METHODS)]
                continue
            name = m[1:] if m[:1] in "+-" else m
            if not valid_method(name):
                raise GnocchiError(400, f"Invalid input: Aggregation method '{name}' is invalid")
            if m.startswith("-"):
                out = [x for x in out if x != name]
            elif name not in out:
                out.append(name)
        return out

    @model_validator(mode="after")
    def _distinct(self) -> ArchivePolicy:
        grans = [d.granularity for d in self.definition]
        if len(grans) != len(set(grans)):
            raise GnocchiError(400, "More than one archive policy uses granularity "
                                    f"`{span_text(grans[0])}`")
        self.definition.sort(key=lambda d: d.granularity)
        return self

    def render(self) -> dict[str, Any]:
        return {"name": self.name, "back_window": self.back_window,
                "definition": [d.render() for d in self.definition],
                "aggregation_methods": sorted(self.aggregation_methods)}


class ArchivePolicyRule(_Doc):
    name: str = Field(min_length=1, max_length=255)
    metric_pattern: str = Field(min_length=1)
    archive_policy_name: str

    def render(self) -> dict[str, Any]:
        return self.model_dump()


#: Gnocchi's resource type attribute kinds and the keys each takes.
ATTRIBUTE_KEYS = {"string": {"min_length", "max_length"}, "uuid": set(), "number": {"min", "max"},
                  "bool": set(), "datetime": set()}


class Attribute(_Doc):
    type: str
    required: bool = True
    min_length: int | None = None
    max_length: int | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("type") not in ATTRIBUTE_KEYS:
            raise GnocchiError(400, f"Invalid input: attribute type must be one of {', '.join(ATTRIBUTE_KEYS)}")
        data = {k: v for k, v in data.items() if k != "options" and v is not None}  # None: not set (as stored)
        bad = set(data) - {"type", "required"} - ATTRIBUTE_KEYS[data["type"]]
        if bad:
            raise GnocchiError(400, f"Invalid input: extra keys not allowed @ data['{sorted(bad)[0]}']")
        if data["type"] == "string":
            data.setdefault("min_length", 0)
            data.setdefault("max_length", 255)
        return data

    def render(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def check(self, name: str, value: Any) -> Any:
        """The value as stored, or a 400 naming the attribute."""
        if value is None:
            if self.required:
                raise GnocchiError(400, f"Invalid input: expected {self.type} for dictionary value @ data['{name}']")
            return None
        kind = self.type
        ok = True
        if kind == "string":
            ok = isinstance(value, str) and (self.min_length or 0) <= len(value) <= (self.max_length or 255)
        elif kind == "uuid":
            try:
                value = str(uuid.UUID(str(value)))
            except ValueError:
                ok = False
        elif kind == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                self.min is None or value >= self.min) and (self.max is None or value <= self.max)
        elif kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "datetime":
            try:
                value = iso(to_timestamp(value))
            except GnocchiError:
                ok = False
        if not ok:
            raise GnocchiError(400, f"Invalid input: invalid value for {kind} @ data['{name}']")
        return value


class ResourceType(_Doc):
    name: str = Field(pattern=r"^[a-zA-Z][a-zA-Z0-9_]*$", max_length=255)
    attributes: dict[str, Attribute] = Field(default_factory=dict)
    state: str = "active"

    def render(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state,
                "attributes": {k: a.render() for k, a in sorted(self.attributes.items())}}


#: What every resource has whatever its type (Gnocchi's ``generic`` columns).
GENERIC_FIELDS = ("id", "original_resource_id", "type", "project_id", "user_id", "creator", "created_by_user_id",
                  "created_by_project_id", "started_at", "ended_at", "revision_start", "revision_end", "metrics")


def resource_uuid(value: str, creator: str) -> str:
    """Gnocchi's id for a resource: the UUID given, else a UUID5 of the text and its creator."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        if not value or "/" in value or len(value) > 255:
            raise GnocchiError(400, f"Invalid input: not a valid resource id {value!r}") from None
        return str(uuid.uuid5(RESOURCE_ID_NAMESPACE, value + "\x00" + creator))


class Resource(_Doc):
    id: str
    original_resource_id: str
    type: str
    project_id: str | None = None
    user_id: str | None = None
    creator: str = ""
    started_at: datetime
    ended_at: datetime | None = None
    revision_start: datetime
    attributes: dict[str, Any] = Field(default_factory=dict)
    #: metric name -> metric id
    metrics: dict[str, str] = Field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        user, _, project = self.creator.partition(":")
        return {"id": self.id, "original_resource_id": self.original_resource_id, "type": self.type,
                "project_id": self.project_id, "user_id": self.user_id, "creator": self.creator,
                "created_by_user_id": user or None, "created_by_project_id": project or None,
                "started_at": iso(self.started_at), "ended_at": iso(self.ended_at),
                "revision_start": iso(self.revision_start), "revision_end": None,
                "metrics": dict(sorted(self.metrics.items())), **self.attributes}

    def field(self, name: str) -> Any:
        """A generic column or a type attribute, for search filters and group-bys."""
        if name in self.attributes:
            return self.attributes[name]
        if name in ("id", "original_resource_id", "type", "project_id", "user_id", "creator",
                    "started_at", "ended_at", "revision_start"):
            return getattr(self, name)
        user, _, project = self.creator.partition(":")
        return {"created_by_user_id": user or None, "created_by_project_id": project or None,
                "revision_end": None}.get(name)


class Metric(_Doc):
    id: str
    name: str | None = None
    unit: str | None = None
    archive_policy_name: str
    resource_id: str | None = None
    creator: str = ""

    @property
    def meter(self) -> str:
        """The sample store's meter name: the metric's name, or its id when it has none."""
        return self.name or self.id

    def render(self, policy: ArchivePolicy | None = None, resource: Resource | None = None) -> dict[str, Any]:
        user, _, project = self.creator.partition(":")
        out: dict[str, Any] = {"id": self.id, "name": self.name, "unit": self.unit, "creator": self.creator,
                               "created_by_user_id": user or None, "created_by_project_id": project or None}
        if policy is None:
            out["archive_policy_name"] = self.archive_policy_name
            out["resource_id"] = self.resource_id
        else:
            out["archive_policy"] = policy.render()
            out["resource"] = resource.render() if resource is not None else None
        return out
