"""Alarm and trigger states on /metrics, for Grafana's alarm board and Prometheus' own alerting.

Prometheus' convention for an enum: one series per state, 1 for the current
one, 0 for the others, so ``telemetry_alarm_state{state="alarm"} == 1`` lists
what fires and ``sum by (state)`` counts alarms per state. States are Aodh's
words (``ok``, ``alarm``, ``insufficient data``); a Zabbix-style trigger is
``alarm`` while in PROBLEM.

The table starts from the rule engine's current states, then follows the
``alarm_transitions`` topic in a consumer group of this server's own (every
server shows every alarm). A transition older than the state shown is
ignored, so a replayed backlog cannot roll a state back.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telemetry.bus import Delivery
from telemetry.bus.topics import ALARM_TRANSITIONS
from telemetry.models import AlarmTransition, Record
from telemetry.rules.models import ALARM, OK, STATES, UNKNOWN
from telemetry.rules.service import RulesService, RulesUnavailable
from telemetry.rules.triggers.engine import AODH_SEVERITY
from telemetry.exporter.base import CollectorStage
from telemetry.runtime import Runtime

LABELS = ("alarm_id", "alarm_name", "type", "severity", "host", "state")


@dataclass
class AlarmState:
    alarm_id: str
    name: str
    type: str
    severity: str
    host: str
    state: str
    #: Epoch seconds of the evaluation that set ``state``.
    since: float
    #: Grouped threshold alarms: state per group (JSON list of the group's values).
    groups: dict[str, str] = field(default_factory=dict)


def overall(groups: dict[str, str]) -> str:
    """An alarm with groups fires while any group fires (the rule engine's own rule)."""
    states = set(groups.values())
    return ALARM if ALARM in states else OK if OK in states else UNKNOWN


def rules_snapshot(rules: RulesService) -> list[AlarmState]:
    """Every alarm and trigger the engine evaluates, as it stands now."""
    out = []
    for a in rules.alarms():
        groups = dict((a.model_extra or {}).get("group_states", {}))
        out.append(
            AlarmState(
                a.alarm_id, a.name, a.type, a.severity, "", a.state, a.state_timestamp.timestamp(), groups
            )
        )
    for t in rules.triggers():
        since = datetime.fromisoformat(t["last_change"]).timestamp() if t["last_change"] else 0.0
        out.append(
            AlarmState(
                t["trigger_id"],
                t["name"],
                "trigger",
                AODH_SEVERITY[t["severity"]],
                t["host"],
                ALARM if t["status"] == "PROBLEM" else OK,
                since,
            )
        )
    return out


def current_ids(rules: RulesService) -> set[str]:
    return {a.alarm_id for a in rules.alarms()} | {t["trigger_id"] for t in rules.triggers()}


class AlarmStateTable(Collector):
    """States by alarm id; written on the event loop, read by /metrics from the API's thread."""

    def __init__(self, evaluations: Callable[[], int | None] = lambda: None) -> None:
        self.alarms: dict[str, AlarmState] = {}
        self._evaluations = evaluations
        self._lock = threading.Lock()

    def load(self, states: Iterable[AlarmState]) -> None:
        with self._lock:
            for s in states:
                old = self.alarms.get(s.alarm_id)
                if old is None or old.since <= s.since:
                    self.alarms[s.alarm_id] = s

    def apply(self, t: AlarmTransition) -> bool:
        """Take a transition unless the state shown is newer; True if it was taken."""
        when = t.timestamp.timestamp()
        kind = t.alarm_type or str((t.reason_data or {}).get("type") or "")
        labels = t.labels
        host = str(labels.get("host") or "") if kind == "trigger" else ""
        group = (t.reason_data or {}).get("group")
        with self._lock:
            s = self.alarms.get(t.alarm_id)
            if s is None:
                s = self.alarms[t.alarm_id] = AlarmState(
                    t.alarm_id, t.alarm_name, kind, t.severity, host, t.current, when
                )
            elif when < s.since:
                return False
            s.name, s.severity, s.since = t.alarm_name, t.severity, when
            s.type = kind or s.type
            s.host = host or s.host
            if isinstance(group, dict):
                s.groups[json.dumps(list(group.values()))] = t.current
                s.state = overall(s.groups)
            else:
                s.groups.clear()
                s.state = t.current
        return True

    def retain(self, ids: set[str]) -> None:
        """Forget alarms that were deleted."""
        with self._lock:
            for gone in set(self.alarms) - ids:
                del self.alarms[gone]

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows = [(s.alarm_id, s.name, s.type, s.severity, s.host, s.state) for s in self.alarms.values()]
        state = GaugeMetricFamily(
            "telemetry_alarm_state",
            "Alarm and trigger states: 1 for the current state, 0 for the others",
            labels=LABELS,
        )
        for *ident, current in rows:
            for st in STATES:
                state.add_metric([*ident, st], 1.0 if st == current else 0.0)
        yield state
        evaluations = self._evaluations()
        if evaluations is not None:
            yield CounterMetricFamily(
                "telemetry_rules_evaluations", "Threshold evaluations the rule engine made", value=evaluations
            )


class AlarmStateExporter(CollectorStage):
    """Keeps ``telemetry_alarm_state`` current from the engine's states and the transitions topic."""

    name = "exporter.alarm_states"
    topics: ClassVar[dict[str, type[Record]]] = {ALARM_TRANSITIONS: AlarmTransition}
    #: Seconds between checks for deleted alarms.
    prune_interval: float = 30.0

    def __init__(self, rt: Runtime, group: str, rules: RulesService | None) -> None:
        """``rules``: the engine of this server, None when it runs none (transitions only)."""
        super().__init__(rt)
        self.group = group
        self.rules = rules
        self.table: AlarmStateTable = AlarmStateTable(
            rules.evaluations if rules is not None else lambda: None
        )

    async def start(self) -> None:
        if self.rules is not None:
            try:
                self.table.load(rules_snapshot(self.rules))
            except RulesUnavailable:
                self.rules = None  # the engine failed to start: follow the transitions alone
        await super().start()
        if self.rules is not None:
            self.spawn(self._prune, "prune")

    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        for _, r in records:
            if isinstance(r, AlarmTransition):
                self.table.apply(r)

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(self.prune_interval)
            if self.rules is not None:
                self.table.retain(current_ids(self.rules))

    def details(self) -> dict[str, Any]:
        return {**super().details(), "alarms": len(self.table.alarms)}
