"""Zabbix-style triggers: per-host expressions, severities, recovery, dependencies, acks.

A trigger is PROBLEM when its expression is non-zero. With a recovery
expression it returns to OK only when the expression is zero AND the recovery
expression is non-zero (Zabbix's hysteresis). A trigger whose dependency
(transitively) is in PROBLEM is not evaluated and emits nothing: a dead
switch pages once, not for every host behind it. An expression that cannot
be computed yet (no data) leaves the value as it was, flagged ``unknown``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from telemetry.models import derived_id
from telemetry.rules.triggers.expression import Node, calls, parse, substitute
from telemetry.rules.triggers.functions import ItemHistory, Unsupported, evaluate, max_window

SEVERITIES = ("not classified", "information", "warning", "average", "high", "disaster")
#: Zabbix severities onto Aodh's three, for the AlarmTransition record and dispatchers.
AODH_SEVERITY = {"not classified": "low", "information": "low", "warning": "moderate", "average": "moderate",
                 "high": "critical", "disaster": "critical"}


class TriggerDef(BaseModel):
    """A trigger as written in a template or rules file (before binding to a host)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    expression: str
    recovery_expression: str | None = None
    severity: Literal["not classified", "information", "warning", "average", "high", "disaster"] = "not classified"
    depends_on: list[str] = Field(default_factory=list, description="Trigger names (same host) or host:name")
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    actions: list[str] = Field(default_factory=list, description="Targets told of this trigger's transitions")

    @field_validator("severity", mode="before")
    @classmethod
    def _sev(cls, v: Any) -> Any:
        return v.lower().replace("_", " ") if isinstance(v, str) else v


class Trigger:
    """A trigger bound to one host, with its parsed trees and runtime state."""

    def __init__(self, d: TriggerDef, host: str, template: str = "", macros: dict[str, Any] | None = None) -> None:
        def bind(text: str) -> str:
            text = substitute(text, host, template)
            for k, v in (macros or {}).items():
                text = text.replace(k, str(v))
            return text

        self.definition = d
        self.host = host
        self.template = template
        self.name = bind(d.name)
        self.trigger_id = derived_id("trigger", host, self.name)
        self.expression = bind(d.expression)
        self.recovery = bind(d.recovery_expression) if d.recovery_expression else None
        self.tree: Node = parse(self.expression)
        self.recovery_tree: Node | None = parse(self.recovery) if self.recovery else None
        self.depends_on = [bind(x) for x in d.depends_on]
        self.severity = d.severity
        self.value = "OK"
        self.unknown: str | None = None
        self.last_change: float | None = None
        self.suppressed = False
        self.acks: list[dict[str, Any]] = []

    @property
    def acknowledged(self) -> bool:
        return bool(self.acks) and self.value == "PROBLEM"

    def items(self) -> list[Any]:
        return [c for t in (self.tree, self.recovery_tree) if t is not None for c in calls(t)]

    def state(self) -> dict[str, Any]:
        return {"value": self.value, "last_change": self.last_change, "acks": self.acks}

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "trigger_id": self.trigger_id, "name": self.name, "host": self.host, "template": self.template,
            "severity": self.severity, "status": self.value, "expression": self.expression,
            "recovery_expression": self.recovery, "depends_on": self.depends_on, "suppressed": self.suppressed,
            "unknown": self.unknown, "acknowledged": self.acknowledged, "acknowledges": self.acks,
            "last_change": (datetime.fromtimestamp(self.last_change, timezone.utc).isoformat()
                            if self.last_change else None),
            "age_seconds": round(now - self.last_change, 1) if self.last_change else None,
            "tags": self.definition.tags, "info": self.info,
        }

    @property
    def info(self) -> str:
        """Zabbix's Info column: why the status may not tell the whole story."""
        notes = []
        if self.suppressed:
            notes.append(f"depends on {', '.join(self.depends_on)} (in problem): not evaluated")
        if self.unknown:
            notes.append(f"cannot evaluate: {self.unknown}")
        return "; ".join(notes)


class TriggerEngine:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self.history = ItemHistory()
        self.triggers: dict[str, Trigger] = {}
        self.by_item: dict[tuple[str, str], list[Trigger]] = defaultdict(list)
        self.by_name: dict[tuple[str, str], Trigger] = {}
        self.pending: list[tuple[Trigger, str, str, str]] = []  # trigger, previous, current, reason
        self.dirty: set[str] = set()
        #: Triggers another server evaluates (telemetry.cluster): their item history is kept here too.
        self.standby: set[str] = set()

    def add(self, t: Trigger) -> None:
        self.triggers[t.trigger_id] = t
        self.by_name[(t.host, t.name)] = t
        for c in t.items():
            self.history.want(c.item, max_window(c))
            lst = self.by_item[(c.item.host, c.item.key)]
            if t not in lst:
                lst.append(t)

    def restore(self, trigger_id: str, state: dict[str, Any]) -> None:
        t = self.triggers.get(trigger_id)
        if t is not None:
            t.value = state.get("value", "OK")
            t.last_change = state.get("last_change")
            t.acks = state.get("acks", [])

    def on_value(self, host: str, key: str, ts: float, value: float) -> None:
        now = self.clock()
        if self.history.add(host, key, ts, value, now):
            for t in self.by_item.get((host, key), ()):
                self._evaluate(t, now)

    def tick(self) -> None:
        now = self.clock()
        for t in self.triggers.values():
            self._evaluate(t, now)

    def _dependency_problem(self, t: Trigger, depth: int = 0) -> bool:
        if depth > 16:
            return False
        for ref in t.depends_on:
            host, sep, name = ref.partition(":")
            dep = self.by_name.get((host, name) if sep and (host, name) in self.by_name else (t.host, ref))
            if dep is not None and (dep.value == "PROBLEM" or self._dependency_problem(dep, depth + 1)):
                return True
        return False

    def _evaluate(self, t: Trigger, now: float) -> None:
        if t.trigger_id in self.standby:
            return
        if self._dependency_problem(t):
            t.suppressed = True
            return
        t.suppressed = False
        try:
            problem = evaluate(t.tree, self.history, now, self.started) != 0
            recovered = True
            if not problem and t.value == "PROBLEM" and t.recovery_tree is not None:
                recovered = evaluate(t.recovery_tree, self.history, now, self.started) != 0
            t.unknown = None
        except Unsupported as exc:
            t.unknown = str(exc)
            return
        except (ValueError, ZeroDivisionError) as exc:
            t.unknown = f"{type(exc).__name__}: {exc}"
            return
        new = "PROBLEM" if problem else ("OK" if recovered else t.value)
        if new != t.value:
            previous = t.value
            t.value = new
            t.last_change = now
            if new == "OK":
                t.acks = []  # an acknowledgement belongs to one problem
            reason = f"{t.expression} is {'true' if problem else 'false'}" + (
                f"; recovery {t.recovery} is true" if new == "OK" and t.recovery else "")
            self.pending.append((t, previous, new, reason))
            self.dirty.add(t.trigger_id)

    def acknowledge(self, trigger_id: str, message: str, user: str = "") -> Trigger:
        t = self.triggers[trigger_id]
        t.acks.append({"time": datetime.now(timezone.utc).isoformat(), "message": message, "user": user})
        self.dirty.add(trigger_id)
        return t

    def take(self) -> tuple[list[tuple[Trigger, str, str, str]], list[Trigger]]:
        pending, self.pending = self.pending, []
        dirty = [self.triggers[i] for i in self.dirty if i in self.triggers]
        self.dirty = set()
        return pending, dirty
