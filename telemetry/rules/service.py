"""The rule engine as the API sees it: alarm definitions, states, history and triggers.

The API never touches the engine's internals (its alarm dict, the trigger
engine, the store): it calls these methods, so the engine can change how it
keeps alarms without breaking the Aodh routes. Every change is durable
before it is evaluated, and transitions it causes are flushed to the bus
before the call returns.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from telemetry.rules.models import Alarm, AlarmChange
from telemetry.rules.triggers.engine import SEVERITIES, Trigger

if TYPE_CHECKING:
    from telemetry.rules.stage import RulesStage


class RulesUnavailable(Exception):
    """The rule engine has not started (or failed to); the API answers 503."""


class UnknownSeverity(ValueError):
    """A trigger filter named a severity Zabbix does not have."""


class RulesService:
    """Operations on alarms and triggers, over the running rule stage."""

    def __init__(self, stage: RulesStage) -> None:
        self._stage = stage

    def _ready(self) -> RulesStage:
        if self._stage.store is None:
            raise RulesUnavailable("the rule engine is not running (rules.enabled is false or it failed to start)")
        return self._stage

    # -- alarms ------------------------------------------------------------------
    def alarms(self) -> list[Alarm]:
        return list(self._ready().engine.alarms.values())

    def alarm(self, alarm_id: str) -> Alarm | None:
        return self._ready().engine.alarms.get(alarm_id)

    def name_taken(self, name: str, project_id: str | None, other_than: str | None = None) -> bool:
        """Aodh's rule: alarm names are unique within a project."""
        return any(a.name == name and a.project_id == project_id and a.alarm_id != other_than
                   for a in self._ready().engine.alarms.values())

    async def save_alarm(self, alarm: Alarm, change: str, detail: dict[str, Any],
                         user_id: str | None = None, project_id: str | None = None) -> Alarm:
        """Create or update a definition: durable first, then evaluated."""
        stage = self._ready()
        assert stage.store is not None
        entry = AlarmChange(alarm_id=alarm.alarm_id, type=change, detail=json.dumps(detail, default=str),
                            user_id=user_id, project_id=project_id, on_behalf_of=alarm.project_id,
                            severity=alarm.severity)
        store = stage.store

        def save() -> int:
            version = store.put_alarm(alarm.model_copy(deep=True))
            store.add_changes([entry])
            return version

        async with stage._flush_lock:  # the version read back is the one the engine commits against
            stage.versions[alarm.alarm_id] = await asyncio.to_thread(save)
            stage.add_alarm(alarm)
        return alarm

    async def delete_alarm(self, alarm: Alarm, user_id: str | None = None, project_id: str | None = None) -> None:
        stage = self._ready()
        assert stage.store is not None
        entry = AlarmChange(alarm_id=alarm.alarm_id, type="deletion",
                            detail=json.dumps(alarm.to_aodh(), default=str), user_id=user_id,
                            project_id=project_id, on_behalf_of=alarm.project_id, severity=alarm.severity)
        await asyncio.to_thread(stage.store.delete_alarm, alarm.alarm_id)
        await asyncio.to_thread(stage.store.add_changes, [entry])
        stage.remove_alarm(alarm.alarm_id)

    async def set_state(self, alarm_id: str, state: str) -> None:
        stage = self._ready()
        stage.engine.set_state(alarm_id, state)
        await stage.flush()

    async def history(self, alarm_id: str, limit: int = 1000) -> list[AlarmChange]:
        stage = self._ready()
        assert stage.store is not None
        return await asyncio.to_thread(stage.store.history, alarm_id, limit)

    def evaluations(self) -> int:
        """Threshold evaluations the engine made since it started (for /metrics)."""
        return self._stage.engine.evaluations

    # -- triggers ------------------------------------------------------------------
    def triggers(self, host: str | None = None, status: str | None = None,
                 min_severity: str | None = None) -> list[dict[str, Any]]:
        """Problems first, then by severity (highest first), host and name, as Zabbix's problem view."""
        if min_severity is not None and min_severity not in SEVERITIES:
            raise UnknownSeverity(f"unknown severity {min_severity!r} (one of {', '.join(SEVERITIES)})")
        engine = self._stage.triggers
        now = engine.clock()
        floor = SEVERITIES.index(min_severity) if min_severity else 0
        out = [t.to_dict(now) for t in engine.triggers.values()
               if (host is None or t.host == host) and (status is None or t.value == status.upper())
               and SEVERITIES.index(t.severity) >= floor]
        out.sort(key=lambda d: (d["status"] != "PROBLEM", -SEVERITIES.index(d["severity"]), d["host"], d["name"]))
        return out

    def trigger(self, trigger_id: str) -> dict[str, Any] | None:
        engine = self._stage.triggers
        t: Trigger | None = engine.triggers.get(trigger_id)
        return t.to_dict(engine.clock()) if t is not None else None

    async def acknowledge(self, trigger_id: str, message: str, user: str = "") -> dict[str, Any] | None:
        """The trigger after the acknowledgement, or None when there is no such trigger."""
        stage = self._stage
        if trigger_id not in stage.triggers.triggers:
            return None
        t = stage.triggers.acknowledge(trigger_id, message, user)
        await stage.flush()
        return t.to_dict(stage.triggers.clock())
