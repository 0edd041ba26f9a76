"""Noise control: silences and maintenance windows, inhibition, repeats, Heat cooldown, grouping.

Every decision is made when a transition is queued, from state kept in the
outbox database, so it is the same before and after a restart. A decision
not to send is written to the delivery log with its reason: "why did nobody
get paged?" must have an answer.
"""

from __future__ import annotations

import time
from typing import Any

from telemetry.actions.heat import cooldown_key
from telemetry.actions.models import Silence, labels_of
from telemetry.actions.outbox import Outbox
from telemetry.config.rules import ActionsConfig


def silenced_by(t: dict[str, Any], silences: list[Silence]) -> Silence | None:
    """The silence muting ``t``, directly or through an alarm it depends on.

    A dependent trigger (``depends_on``: ids or names of the alarms it depends
    on, as in Zabbix trigger dependencies) is muted with its parent: when a
    host is in maintenance, its services' alarms are expected noise too.
    """
    labels = labels_of(t)
    for s in silences:
        if s.matches(labels):
            return s
    for parent in t.get("depends_on") or []:
        for s in silences:
            if s.matches({"alarm_id": str(parent), "alarm_name": str(parent)}):
                return s
    return None


class NoiseControl:
    def __init__(self, outbox: Outbox, config: ActionsConfig) -> None:
        self.outbox = outbox
        self.config = config

    def inhibited_by(self, t: dict[str, Any]) -> str | None:
        """Id of a firing higher-severity alarm sharing the ``equal`` labels, if any."""
        rule = self.config.inhibit
        if rule is None or str(t.get("severity")) not in rule.target_severity:
            return None
        labels = labels_of(t)
        if any(k not in labels for k in rule.equal):
            return None
        for alarm_id, other in self.outbox.firing(rule.source_severity):
            if alarm_id != t.get("alarm_id") and all(other.get(k) == labels[k] for k in rule.equal):
                return alarm_id
        return None

    def transition_reason(self, t: dict[str, Any], silences: list[Silence]) -> str | None:
        """Why none of this transition's actions go out, or None."""
        if t.get("previous") == t.get("current") and not t.get("repeat_actions"):
            return "suppressed:not-repeating"
        s = silenced_by(t, silences)
        if s is not None:
            return f"suppressed:silenced:{s.id}"
        parent = self.inhibited_by(t)
        if parent is not None:
            return f"suppressed:inhibited:{parent}"
        return None

    def action_reason(self, t: dict[str, Any], target: str, kind: str, now: float) -> str | None:
        """Why this one action is not sent now (repeat interval, Heat cooldown), or None; records the send."""
        if kind == "heat":
            key, interval, why = cooldown_key(target), self.config.heat.cooldown, "suppressed:cooldown"
        elif t.get("previous") == t.get("current"):
            key, interval, why = f"repeat:{t.get('alarm_id')}:{target}", self.config.repeat_interval, \
                "suppressed:repeat-interval"
        else:
            self.outbox.set_sent(f"repeat:{t.get('alarm_id')}:{target}", now)
            return None
        last = self.outbox.last_sent(key)
        if last is not None and now - last < interval:
            return why
        self.outbox.set_sent(key, now)
        return None

    def group_key(self, t: dict[str, Any], target: str) -> str | None:
        if not self.config.group_by:
            return None
        labels = labels_of(t)
        return "|".join([target, str(t.get("current"))] + [labels.get(k, "") for k in self.config.group_by])

    def not_before(self, group_key: str | None) -> float:
        return time.time() + (self.config.group_wait if group_key else 0.0)
