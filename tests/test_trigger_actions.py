"""Zabbix-style actions for triggers: which transitions reach which targets; the problem view's Info column."""

from __future__ import annotations

from pathlib import Path

import yaml

from telemetry.rules.loader import load_rules
from telemetry.rules.triggers.actions import TriggerAction, targets_for
from telemetry.rules.triggers.engine import Trigger, TriggerDef, TriggerEngine


def _trigger(host: str = "ctl-1", severity: str = "high", template: str = "controller", **kw: object) -> Trigger:
    d = TriggerDef.model_validate({"name": "t on {HOST.HOST}", "expression": f"last(/{host}/agent.ping)=0",
                                   "severity": severity, **kw})
    return Trigger(d, host, template)


def test_conditions_and_recovery() -> None:
    rules = [
        TriggerAction(name="pager", min_severity="high", actions=["pagerduty://KEY"], recovery=False),
        TriggerAction(name="chat", min_severity="Warning", hosts=["ctl-*"], actions=["https://chat/hook"]),
        TriggerAction(name="db team", tags={"service": "galera"}, actions=["mailto:db@example.org"]),
        TriggerAction(name="compute only", templates=["compute"], actions=["https://compute/hook"]),
    ]
    t = _trigger(actions=["https://own/hook"], tags={"service": "galera"})
    assert targets_for(t, "PROBLEM", rules) == ["https://own/hook", "pagerduty://KEY", "https://chat/hook",
                                                "mailto:db@example.org"]
    assert targets_for(t, "OK", rules) == ["https://own/hook", "https://chat/hook", "mailto:db@example.org"]
    low = _trigger(host="cmp-1", severity="information", template="compute")
    assert targets_for(low, "PROBLEM", rules) == ["https://compute/hook"]
    dup = _trigger(actions=["https://chat/hook"])
    assert targets_for(dup, "PROBLEM", rules[1:2]) == ["https://chat/hook"]  # each target once


def test_loader_reads_trigger_actions_and_names_bad_ones(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"trigger_actions": [
        {"name": "ok", "min_severity": "high", "actions": ["https://x/hook"]},
        {"name": "no targets", "actions": []},
        {"name": "typo", "min_severity": "hihg", "actions": ["https://x"]},
    ]}))
    rs = load_rules([str(tmp_path)])
    assert [a.name for a in rs.trigger_actions] == ["ok"]
    assert len(rs.errors) == 2 and "trigger_actions[1]" in rs.errors[0] and "trigger_actions[2]" in rs.errors[1]


def test_info_column_says_why() -> None:
    eng = TriggerEngine(clock=lambda: 1000.0)
    base = Trigger(TriggerDef(name="down", expression="last(/h/agent.ping)=0"), "h")
    dep = Trigger(TriggerDef(name="cpu", expression="last(/h/system.cpu.load)>1", depends_on=["down"]), "h")
    for t in (base, dep):
        eng.add(t)
    eng.on_value("h", "agent.ping", 999.0, 0.0)
    eng.tick()
    assert base.value == "PROBLEM" and base.to_dict(1000.0)["info"] == ""
    assert dep.to_dict(1000.0)["info"] == "depends on down (in problem): not evaluated"
    lone = Trigger(TriggerDef(name="x", expression="last(/h2/nothing)>1"), "h2")
    eng.add(lone)
    eng.tick()
    assert lone.to_dict(1000.0)["info"].startswith("cannot evaluate: ")
