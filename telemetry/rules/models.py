"""Alarm definitions in Aodh's shape, and what the engine keeps about them.

The API speaks Aodh's JSON (``threshold_rule``, ``event_rule``,
``composite_rule``, ...) so the ``aodh`` CLI and Heat work unchanged. The
Gnocchi rule types Heat autoscaling templates use are mapped onto our own
samples here, once, so the evaluator knows a single threshold rule shape.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from telemetry.timeutil import utcnow

STATES = ("ok", "alarm", "insufficient data")
UNKNOWN, OK, ALARM = "insufficient data", "ok", "alarm"
SEVERITIES = ("low", "moderate", "critical")
OPERATORS = ("lt", "le", "eq", "ne", "ge", "gt")
OP_SYMBOL = {"lt": "<", "le": "<=", "eq": "==", "ne": "!=", "ge": ">=", "gt": ">"}
STATISTICS = ("max", "min", "avg", "sum", "count")
#: Aodh types whose rule becomes a threshold rule on samples (the Gnocchi ones: telemetry.rules.gnocchi_rules).
THRESHOLD_TYPES = ("threshold", "gnocchi_resources_threshold", "gnocchi_aggregation_by_metrics_threshold",
                   "gnocchi_aggregation_by_resources_threshold")
ALARM_TYPES = (*THRESHOLD_TYPES, "event", "composite", "log")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class QueryItem(_Model):
    """Aodh's ``{field, op, value, type}`` filter on sample fields and ``metadata.*``."""

    field: str
    op: Literal["lt", "le", "eq", "ne", "ge", "gt"] = "eq"
    value: Any
    type: str = ""

    @field_validator("op", mode="before")
    @classmethod
    def _op(cls, v: Any) -> Any:
        return v or "eq"


class TimeConstraint(_Model):
    """A window (cron start + duration) outside which the alarm is not evaluated."""

    name: str
    description: str | None = None
    start: str
    duration: int = Field(ge=0)
    timezone: str = ""

    @field_validator("start")
    @classmethod
    def _cron(cls, v: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(v):
            raise ValueError(f"not a cron expression: {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        if v:
            from zoneinfo import ZoneInfo

            try:
                ZoneInfo(v)
            except Exception:
                raise ValueError(f"Timezone {v} is not valid") from None
        return v

    @model_validator(mode="after")
    def _describe(self) -> TimeConstraint:
        if not self.description:
            self.description = f"Time constraint at {self.start} lasting for {self.duration} seconds"
        return self


class ThresholdRule(_Model):
    """Aodh's threshold rule; ``group_by`` (our extension) gives each resource its own state."""

    meter_name: str
    query: list[QueryItem] = Field(default_factory=list)
    period: int = Field(60, ge=1)
    comparison_operator: Literal["lt", "le", "eq", "ne", "ge", "gt"] = "eq"
    threshold: float
    statistic: Literal["max", "min", "avg", "sum", "count"] = "avg"
    evaluation_periods: int = Field(1, ge=1)
    exclude_outliers: bool = False
    group_by: list[str] = Field(default_factory=list)
    #: Gnocchi's ``rate:`` methods: the statistic is over the differences of each series' consecutive samples.
    rate: bool = False
    #: (meter, resource_id) of each metric a ``gnocchi_aggregation_by_metrics_threshold`` alarm reads.
    series: list[tuple[str, str]] = Field(default_factory=list)


class EventRule(_Model):
    """Aodh's event rule: an ``event_type`` (wildcards) and a query on its traits."""

    event_type: str = "*"
    query: list[QueryItem] = Field(default_factory=list)


class LogRule(_Model):
    """Our log rule: matching events (Kibana-style query) counted over ``period`` seconds.

    ``mode: seen`` fires on a single matching line and goes back to ``ok``
    after ``period`` seconds without another one.
    """

    query: str
    mode: Literal["count", "rate", "seen"] = "count"
    period: int = Field(300, ge=1)
    comparison_operator: Literal["lt", "le", "eq", "ne", "ge", "gt"] = "ge"
    threshold: float = 1.0

    @field_validator("query")
    @classmethod
    def _compiles(cls, v: str) -> str:
        from telemetry.rules.match import compile_query

        compile_query(v)
        return v


class Alarm(_Model):
    """An alarm definition plus its current state, in Aodh's fields."""

    alarm_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    name: str
    description: str = ""
    type: str
    enabled: bool = True
    ok_actions: list[str] = Field(default_factory=list)
    alarm_actions: list[str] = Field(default_factory=list)
    insufficient_data_actions: list[str] = Field(default_factory=list)
    repeat_actions: bool = False
    time_constraints: list[TimeConstraint] = Field(default_factory=list)
    project_id: str | None = None
    user_id: str | None = None
    timestamp: datetime = Field(default_factory=utcnow)
    state: Literal["ok", "alarm", "insufficient data"] = "insufficient data"
    state_timestamp: datetime = Field(default_factory=utcnow)
    state_reason: str = "Not evaluated yet"
    severity: Literal["low", "moderate", "critical"] = "low"
    threshold_rule: ThresholdRule | None = None
    event_rule: EventRule | None = None
    composite_rule: dict[str, Any] | None = None
    log_rule: LogRule | None = None
    #: Where the definition came from: ``api`` or the rules file that holds it.
    origin: str = "api"

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in ALARM_TYPES:
            raise ValueError(f"unsupported alarm type {v!r}; expected one of {', '.join(ALARM_TYPES)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _rule_aliases(cls, data: Any) -> Any:
        """Accept the Gnocchi rule keys and a bare ``rule``; keep them as our threshold rule."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        kind = data.get("type")
        generic = data.pop("rule", None)
        if kind and generic is not None and not data.get(f"{kind}_rule"):
            data[f"{kind}_rule"] = generic
        if kind in THRESHOLD_TYPES and kind != "threshold":
            from telemetry.rules.gnocchi_rules import gnocchi_to_threshold

            raw = data.pop(f"{kind}_rule", None)
            if raw is not None and not data.get("threshold_rule"):
                data["threshold_rule"] = gnocchi_to_threshold(kind, raw) if isinstance(raw, dict) else raw
                raw = {k: v for k, v in raw.items() if k != "series"} if isinstance(raw, dict) else raw
                data["source_rule"] = raw
        for key in ("description", "state_reason"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @model_validator(mode="after")
    def _check(self) -> Alarm:
        need = {"event": "event_rule", "composite": "composite_rule", "log": "log_rule"}.get(self.type, "threshold_rule")
        if getattr(self, need) is None:
            raise ValueError(f"{self.type}_rule must be set for {self.type} type alarm")
        names = [tc.name for tc in self.time_constraints]
        if len(names) != len(set(names)):
            raise ValueError("Time constraint names must be unique for a given alarm.")
        for field in ACTION_FIELDS:
            setattr(self, field, list(dict.fromkeys(getattr(self, field))))  # Aodh drops duplicates
        if self.composite_rule is not None:
            validate_composite(self.composite_rule)
        if not self.description:
            self.description = default_description(self)
        return self

    def actions_for(self, state: str) -> list[str]:
        return {OK: self.ok_actions, ALARM: self.alarm_actions, UNKNOWN: self.insufficient_data_actions}[state]

    def to_aodh(self) -> dict[str, Any]:
        """The JSON Aodh returns: the rule under ``<type>_rule``, times as ISO strings."""
        d = self.model_dump(mode="json", exclude={"threshold_rule", "event_rule", "composite_rule", "log_rule",
                                                  "origin", "source_rule"})
        d = {k: v for k, v in d.items() if not k.startswith("_")}
        for key in ("timestamp", "state_timestamp"):
            d[key] = d[key].replace("+00:00", "").replace("Z", "") if isinstance(d[key], str) else d[key]
        key = f"{self.type}_rule"
        if self.type in THRESHOLD_TYPES and self.type != "threshold":
            d[key] = getattr(self, "source_rule", None) or self.threshold_rule.model_dump(mode="json")  # type: ignore[union-attr]
        else:
            rule = getattr(self, key)
            d[key] = rule if isinstance(rule, dict) else rule.model_dump(mode="json")
        d["origin"] = self.origin
        return d


#: The fields of an alarm that hold action targets (URLs that may carry secrets).
ACTION_FIELDS = ("alarm_actions", "ok_actions", "insufficient_data_actions")


def validate_composite(node: Any, depth: int = 0) -> None:
    """``{"and"|"or": [...]}`` trees whose leaves are rules or references to other alarms."""
    if depth > 10:
        raise ValueError("composite_rule is nested too deeply")
    if not isinstance(node, dict):
        raise ValueError(f"composite_rule node must be an object, got {node!r}")
    ops = [k for k in ("and", "or") if k in node]
    if ops:
        if len(ops) > 1 or not isinstance(node[ops[0]], list) or not node[ops[0]]:
            raise ValueError("a composite node holds exactly one of 'and'/'or' with a non-empty list")
        for sub in node[ops[0]]:
            validate_composite(sub, depth + 1)
        return
    if "alarm_id" in node or "alarm" in node:
        return
    kind = node.get("type", "threshold")
    if kind not in THRESHOLD_TYPES:
        raise ValueError(f"composite leaf type {kind!r} is not supported (threshold types or alarm_id)")
    leaf_rule(node)


def leaf_rule(node: dict[str, Any]) -> ThresholdRule:
    body = {k: v for k, v in node.items() if k != "type"}
    kind = node.get("type", "threshold")
    if kind == "threshold":
        return ThresholdRule(**body)
    from telemetry.rules.gnocchi_rules import gnocchi_to_threshold

    return gnocchi_to_threshold(kind, body)


def default_description(alarm: Alarm) -> str:
    r = alarm.threshold_rule
    if r is not None:
        return (f"Alarm when {r.meter_name} is {r.comparison_operator} a {r.statistic} of "
                f"{r.threshold} over {r.period} seconds")
    return f"{alarm.type} alarm rule"


def condition_text(alarm: Alarm) -> str:
    """Ceilometer's "Alarm condition" column: ``cpu_util > 75.0 during 1 x 30s``."""
    r = alarm.threshold_rule
    if r is not None:
        return f"{r.meter_name} {OP_SYMBOL[r.comparison_operator]} {r.threshold} during {r.evaluation_periods} x {r.period}s"
    if alarm.event_rule is not None:
        q = " AND ".join(f"{q.field} {OP_SYMBOL[q.op]} {q.value}" for q in alarm.event_rule.query)
        return f"event {alarm.event_rule.event_type}" + (f" where {q}" if q else "")
    if alarm.log_rule is not None:
        lr = alarm.log_rule
        if lr.mode == "seen":
            return f"seen {lr.query} within {lr.period}s"
        return f"{lr.mode}({lr.query}) {OP_SYMBOL[lr.comparison_operator]} {lr.threshold} during {lr.period}s"
    return f"combinated states ({json.dumps(alarm.composite_rule, sort_keys=True)})"


class AlarmChange(_Model):
    """One entry of an alarm's history, in Aodh's shape (``detail`` is a JSON string)."""

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    alarm_id: str
    type: Literal["creation", "rule change", "state transition", "deletion"]
    detail: str
    project_id: str | None = None
    user_id: str | None = None
    on_behalf_of: str | None = None
    timestamp: datetime = Field(default_factory=utcnow)
    severity: str | None = None
