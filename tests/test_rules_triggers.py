"""Zabbix-style triggers: grammar, functions over sample history, recovery, dependencies, templates."""

from __future__ import annotations

import pytest

from telemetry.rules.loader import load_rules
from telemetry.rules.triggers.engine import Trigger, TriggerDef, TriggerEngine
from telemetry.rules.triggers.expression import ExpressionError, parse

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make(expr: str, host: str = "cc01", clock: Clock | None = None, **kw) -> tuple[TriggerEngine, Trigger]:
    eng = TriggerEngine(clock or Clock())
    t = Trigger(TriggerDef(name=kw.pop("name", "t"), expression=expr, **kw), host)
    eng.add(t)
    return eng, t


def test_grammar_examples_from_zabbix() -> None:
    tree = parse("avg(/cc01/system.cpu.load[all,avg1],5m)>3.5")
    assert tree[0] == ">" and tree[1][1].item.key == "system.cpu.load[all,avg1]"
    assert parse("nodata(/cn01/agent.ping,3m)=1")[1][1].params == ("3m",)
    tree = parse('last(/h/k)>1 and (min(/h/k,#3)<2 or not count(/h/k,5m,"gt",10)>=2) or -last(/h/k)*2<>4K')
    assert tree[0] == "or"


@pytest.mark.parametrize("bad", ["avg(/h/k,5m", "foo(/h/k)>1", "last(h/k)>1", "1 >", "last(/h/k) >> 2"])
def test_grammar_errors_name_the_spot(bad: str) -> None:
    with pytest.raises(ExpressionError, match="position"):
        parse(bad)


def test_never_eval() -> None:
    with pytest.raises(ExpressionError):
        parse("__import__('os').system('true')")


def test_functions_over_history() -> None:
    from telemetry.rules.triggers.functions import evaluate

    clock = Clock()
    eng = TriggerEngine(clock)
    exprs = {"last(/h/k)": 10, "last(/h/k,#2)": 4, "avg(/h/k,2m)": 7, "min(/h/k,5m)": 1, "max(/h/k,5m)": 10,
             "sum(/h/k,#3)": 17, "count(/h/k,5m)": 5, 'count(/h/k,5m,"gt",2)': 3, "change(/h/k)": 6,
             "diff(/h/k)": 1, "avg(/h/k,2m:now-2m)": 2.5, "(last(/h/k)-1)/3*2+1": 7}
    triggers = {e: Trigger(TriggerDef(name=e, expression=e), "h") for e in exprs}
    for t in triggers.values():
        eng.add(t)  # history is kept only for what some trigger reads, as long as it needs
    for i, v in enumerate([1, 2, 3, 4, 10]):
        eng.on_value("h", "k", T0 - 240 + i * 60, v)
    got = {e: evaluate(t.tree, eng.history, clock.now, eng.started) for e, t in triggers.items()}
    assert got == exprs


def test_problem_recovery_hysteresis() -> None:
    clock = Clock()
    eng, t = make("last(/h/load)>5", "h", clock, recovery_expression="last(/h/load)<3", severity="high")
    eng.on_value("h", "load", T0, 6)
    assert t.value == "PROBLEM"
    eng.on_value("h", "load", T0 + 1, 4)  # below 5 but not below 3: still a problem
    assert t.value == "PROBLEM"
    eng.on_value("h", "load", T0 + 2, 2)
    assert t.value == "OK"
    assert [(p, c) for _, p, c, _ in eng.take()[0]] == [("OK", "PROBLEM"), ("PROBLEM", "OK")]


def test_nodata_fires_when_data_stops() -> None:
    clock = Clock()
    eng, t = make("nodata(/cn01/agent.ping,3m)=1", "cn01", clock)
    eng.on_value("cn01", "agent.ping", T0, 1)
    clock.now += 120
    eng.tick()
    assert t.value == "OK"
    clock.now += 61
    eng.tick()
    assert t.value == "PROBLEM"
    eng.on_value("cn01", "agent.ping", clock.now, 1)
    assert t.value == "OK"


def test_dependency_suppresses_triggers_behind_a_dead_switch() -> None:
    clock = Clock()
    eng = TriggerEngine(clock)
    switch = Trigger(TriggerDef(name="switch down", expression="last(/sw1/icmpping)=0", severity="disaster"), "sw1")
    host = Trigger(TriggerDef(name="host down", expression="nodata(/cn01/agent.ping,1m)=1",
                              depends_on=["sw1:switch down"], severity="high"), "cn01")
    eng.add(switch)
    eng.add(host)
    eng.on_value("cn01", "agent.ping", T0, 1)
    eng.on_value("sw1", "icmpping", T0, 0)
    assert switch.value == "PROBLEM"
    clock.now += 120
    eng.tick()
    assert host.value == "OK" and host.suppressed
    eng.on_value("sw1", "icmpping", clock.now, 1)
    eng.tick()
    assert host.value == "PROBLEM" and not host.suppressed
    assert [x[0].name for x in eng.take()[0]] == ["switch down", "switch down", "host down"]


def test_unknown_keeps_the_value() -> None:
    eng, t = make("avg(/h/k,1m)>1", "h")
    eng.tick()
    assert t.value == "OK" and "no values" in (t.unknown or "")


def test_acknowledge_with_comment_cleared_on_recovery() -> None:
    eng, t = make("last(/h/k)>1", "h")
    eng.on_value("h", "k", T0, 5)
    eng.acknowledge(t.trigger_id, "looking into it", "ops")
    assert t.acknowledged and t.acks[0]["message"] == "looking into it"
    eng.on_value("h", "k", T0 + 1, 0)
    assert not t.acknowledged and t.acks == []


def test_shipped_templates_bind_per_host(tmp_path) -> None:
    rs = load_rules(["rules/"])
    assert {"controller", "compute", "storage"} <= set(rs.templates)
    assert not rs.errors
    tpl = rs.templates["storage"]
    eng = TriggerEngine(Clock())
    for d in tpl.triggers:
        eng.add(Trigger(d, "st01", tpl.name, tpl.macros))
    disk = next(t for t in eng.triggers.values() if t.name.startswith("Root filesystem"))
    assert "/st01/hardware.disk.size.used[/]" in disk.expression and "{$" not in disk.expression
    eng.on_value("st01", "hardware.cpu.util", T0, 5)
    eng.on_value("st01", "hardware.disk.size.total[/]", T0, 100)
    eng.on_value("st01", "hardware.disk.size.used[/]", T0, 95)
    assert disk.value == "PROBLEM" and disk.severity == "high"
