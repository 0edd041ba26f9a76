"""Which actions a trigger's transition goes to: Zabbix's "actions", written in rules files.

Zabbix separates what is wrong (triggers) from who hears of it (actions with
conditions on severity, host, template and tags). Here both forms exist:

    triggers:                       # on a trigger: its own targets
      - {name: ..., expression: ..., severity: high, actions: ["https://hooks.example/ops"]}
    trigger_actions:                # in any rules file: every matching trigger's transitions
      - name: page the on-call engineer
        min_severity: high
        templates: [controller]     # optional: only triggers of these templates
        hosts: ["ctl-*"]            # optional: host name globs
        tags: {service: rabbitmq}   # optional: tags the trigger must carry
        actions: ["pagerduty://ROUTING_KEY"]
        recovery: true              # also when the problem resolves (Zabbix's recovery operations)

Targets are the alarm action URLs the dispatcher knows (webhooks, chat,
``pagerduty://``, ``mailto:``...); the transition's severity is the trigger's,
mapped onto Aodh's three, with Zabbix's own in ``reason_data`` and ``labels``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from telemetry.rules.triggers.engine import Trigger

__all__ = ["TriggerAction", "targets_for"]

SEVERITIES = ("not classified", "information", "warning", "average", "high", "disaster")


class TriggerAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    min_severity: Literal["not classified", "information", "warning", "average", "high", "disaster"] = \
        "not classified"
    hosts: list[str] = Field(default_factory=list, description="Host name globs; empty: every host")
    templates: list[str] = Field(default_factory=list, description="Template names; empty: any (and none)")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags the trigger must carry, with these values")
    actions: list[str] = Field(min_length=1, description="Action targets (URLs) to notify")
    recovery: bool = Field(True, description="Notify when the problem resolves too")

    @field_validator("min_severity", mode="before")
    @classmethod
    def _sev(cls, v: Any) -> Any:
        return v.lower().replace("_", " ") if isinstance(v, str) else v

    def matches(self, t: Trigger) -> bool:
        return (SEVERITIES.index(t.severity) >= SEVERITIES.index(self.min_severity)
                and (not self.hosts or any(fnmatchcase(t.host, g) for g in self.hosts))
                and (not self.templates or t.template in self.templates)
                and all(t.definition.tags.get(k) == v for k, v in self.tags.items()))


def targets_for(t: Trigger, current: str, rules: list[TriggerAction]) -> list[str]:
    """The targets of a transition to ``current`` (``PROBLEM`` or ``OK``), each once, in the order written."""
    out = list(t.definition.actions)
    for r in rules:
        if (current == "PROBLEM" or r.recovery) and r.matches(t):
            out += r.actions
    return list(dict.fromkeys(out))
