"""Pydantic models at the actions boundary: outbox items, delivery log rows, silences.

An outbox item carries the whole transition (with the rule engine's extra
fields) rather than a reference, so a restart can deliver it without the rule
engine or the bus having kept anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from telemetry.timeutil import parse_timestamp, utcnow

#: Aodh severities plus the Alertmanager/Zabbix names operators also use.
SEVERITIES = ("low", "moderate", "warning", "critical")


def labels_of(t: dict[str, Any]) -> dict[str, str]:
    """What silences, grouping and inhibition match on: alarm fields plus the rule engine's labels."""
    out = {str(k): str(v) for k, v in (t.get("labels") or {}).items() if v is not None}
    for k in ("alarm_id", "alarm_name", "severity", "alarm_type"):
        if t.get(k) is not None:
            out.setdefault(k, str(t[k]))
    out.setdefault("alertname", str(t.get("alarm_name", "")))
    return out


def alarm_value(t: dict[str, Any]) -> Any:
    """The measured value behind a transition (Aodh threshold reason_data keeps it as most_recent)."""
    rd = t.get("reason_data") or {}
    for k in ("most_recent", "value", "current_value"):
        if k in rd:
            return rd[k]
    return None


@dataclass
class Job:
    """One outbox row: a (transition x action) waiting for, or past, delivery."""

    id: str
    target: str
    notifier: str
    transition: dict[str, Any]
    attempts: int = 0
    group_key: str | None = None
    created_at: float = 0.0

    @property
    def alarm_id(self) -> str:
        return str(self.transition.get("alarm_id", ""))


@dataclass
class SendOutcome:
    """Result of one delivery attempt, classified for the retry policy."""

    ok: bool
    retry: bool = False
    status: int | None = None
    error: str = ""
    retry_after: float | None = None
    skipped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def success(cls, status: int | None = None) -> SendOutcome:
        return cls(ok=True, status=status)

    @classmethod
    def transient(cls, error: str, status: int | None = None, retry_after: float | None = None) -> SendOutcome:
        return cls(ok=False, retry=True, status=status, error=error, retry_after=retry_after)

    @classmethod
    def permanent(cls, error: str, status: int | None = None) -> SendOutcome:
        return cls(ok=False, retry=False, status=status, error=error)

    @classmethod
    def skip(cls, why: str) -> SendOutcome:
        return cls(ok=True, skipped=True, error=why)


class Matcher(BaseModel):
    """``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex``, as in Alertmanager."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, description="alarm_id, alarm_name, host, role, severity or any label")
    value: str
    op: Literal["=", "!=", "=~", "!~"] = "="

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.name}: bad regular expression {self.value!r}: {exc}") from None
        return self

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = re.match(r"^\s*([A-Za-z_][\w.\-]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", text)
        if not m:
            raise ValueError(f"not a matcher: {text!r} (expected name=value, name!=value, name=~regex)")
        return cls(name=m.group(1), op=m.group(2), value=m.group(3).strip("\"'"))

    def matches(self, labels: dict[str, str]) -> bool:
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        hit = re.fullmatch(self.value, have) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


class SilenceIn(BaseModel):
    """A silence or maintenance window as created through the API or CLI."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[Matcher] = Field(..., min_length=1, description="All must match for the silence to apply")
    starts_at: datetime = Field(default_factory=utcnow)
    ends_at: datetime
    comment: str = ""
    created_by: str = ""

    _ts = field_validator("starts_at", "ends_at", mode="before")(lambda v: parse_timestamp(v) if v is not None else v)

    @field_validator("matchers", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            v = [{"name": k, "value": str(val)} for k, val in v.items()]
        return [Matcher.parse(m) if isinstance(m, str) else m for m in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _order(self) -> SilenceIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class Silence(SilenceIn):
    id: str
    created_at: datetime = Field(default_factory=utcnow)

    def active(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


class DeliveryRow(BaseModel):
    """One line of the delivery log: an attempt, or a decision not to send."""

    id: int
    item_id: str | None
    time: datetime
    alarm_id: str
    alarm_name: str
    state: str
    notifier: str
    target: str  # redacted
    status: str  # delivered | retry | dead | suppressed:<why> | blocked | skipped
    http_status: int | None = None
    attempts: int = 0
    error: str = ""
