"""Rules files: alarms, host-bound triggers and per-role templates (YAML).

A file may hold any of::

    alarms:                # Aodh-shaped alarm definitions (name, type, <type>_rule, actions, ...)
      - {name: ..., type: log, log_rule: {query: "level:CRITICAL", mode: seen}}
    template: compute      # a role template: checks for the agent, triggers for every host of the role
    macros: {"{$LOAD_MAX}": 4}
    checks: [...]
    triggers: [...]        # with {HOST.HOST} standing for the host
    hosts: [cn01]          # (without template:) bind these triggers to the listed hosts
    trigger_actions: [...] # who hears of which triggers' transitions (telemetry.rules.triggers.actions)

File alarms get ids derived from their names, so their state survives restarts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from telemetry.content import content_path
from telemetry.models import derived_id
from telemetry.rules.models import Alarm
from telemetry.rules.triggers.actions import TriggerAction
from telemetry.rules.triggers.engine import TriggerDef

log = logging.getLogger(__name__)


class RulesFileError(ValueError):
    """A rules file that cannot be used; the message names the file and the entry."""


@dataclass
class Template:
    name: str
    triggers: list[TriggerDef]
    macros: dict[str, Any] = field(default_factory=dict)
    checks: list[Any] = field(default_factory=list)
    source: str = ""


@dataclass
class RuleSet:
    alarms: list[Alarm] = field(default_factory=list)
    templates: dict[str, Template] = field(default_factory=dict)
    host_triggers: list[tuple[str, TriggerDef]] = field(default_factory=list)
    trigger_actions: list[TriggerAction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def rule_files(paths: list[str]) -> list[Path]:
    """YAML files under the configured paths.

    A relative path names the shipped content first (``rules/`` is the shipped
    rules folder, ``alarms/`` one inside it), and the current folder only when
    the shipped content has no such path: a ``./rules`` folder where the
    daemon happens to start must not hide the shipped rules. An operator
    replaces them by listing other paths instead of ``rules/``.
    """
    shipped = content_path("rules")
    out: list[Path] = []
    for p in paths:
        rel = Path(p).expanduser()
        candidates = [rel]
        if not rel.is_absolute():
            candidates = [shipped.parent / rel if rel.parts and rel.parts[0] == "rules" else shipped / rel, rel]
        for c in candidates:
            if c.is_file():
                out.append(c)
                break
            if c.is_dir():
                out.extend(sorted(x for x in c.rglob("*.y*ml") if x.is_file()))
                break
        else:
            log.warning("rules: %s matches no file (relative paths look in the shipped rules/, then in %s)", p,
                        Path.cwd())
    return list(dict.fromkeys(x.resolve() for x in out))


def load_rules(paths: list[str]) -> RuleSet:
    """Load every file; a bad entry is reported (in ``errors``) and the others still load."""
    rs = RuleSet()
    for f in rule_files(paths):
        try:
            doc = yaml.safe_load(f.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            rs.errors.append(f"{f}: {exc}")
            continue
        if not isinstance(doc, dict):
            rs.errors.append(f"{f}: expected a mapping at the top")
            continue
        for i, raw in enumerate(doc.get("alarms") or []):
            try:
                data = dict(raw)
                data.setdefault("alarm_id", derived_id("alarm-file", data.get("name", "")))
                data["origin"] = f.name
                rs.alarms.append(Alarm.model_validate(data))
            except Exception as exc:  # one bad alarm must not hide the rest
                rs.errors.append(f"{f}: alarms[{i}] ({raw.get('name') if isinstance(raw, dict) else raw}): {exc}")
        triggers: list[TriggerDef] = []
        for i, raw in enumerate(doc.get("triggers") or []):
            try:
                triggers.append(TriggerDef.model_validate(raw))
            except Exception as exc:
                rs.errors.append(f"{f}: triggers[{i}]: {exc}")
        for i, raw in enumerate(doc.get("trigger_actions") or []):
            try:
                rs.trigger_actions.append(TriggerAction.model_validate(raw))
            except Exception as exc:
                rs.errors.append(f"{f}: trigger_actions[{i}]: {exc}")
        if doc.get("template"):
            name = str(doc["template"])
            rs.templates[name] = Template(name, triggers, dict(doc.get("macros") or {}),
                                          list(doc.get("checks") or []), str(f))
        else:
            for host in doc.get("hosts") or []:
                rs.host_triggers.extend((str(host), t) for t in triggers)
    for e in rs.errors:
        log.error("rules: %s", e)
    return rs
