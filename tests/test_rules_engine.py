"""The alarm engine on a controlled clock: Aodh's state rule, groups, composite, event and log alarms."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from telemetry.rules.evaluator import Engine
from telemetry.rules.match import QuerySyntaxError, compile_query
from telemetry.rules.models import Alarm, condition_text

T0 = 1_800_000_000.0  # aligned to 30 s and 60 s periods


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def threshold(name: str = "cpu", n: int = 1, period: int = 30, **rule) -> Alarm:
    body = {"meter_name": "cpu_util", "threshold": 75, "comparison_operator": "gt", "period": period,
            "evaluation_periods": n, **rule}
    return Alarm(name=name, type="threshold", threshold_rule=body, alarm_actions=["http://a/alarm"],
                 ok_actions=["http://a/ok"])


def sample(value: float, rid: str = "vm1", **meta) -> dict:
    return {"counter_name": "cpu_util", "counter_volume": value, "resource_id": rid, "resource_metadata": meta}


def feed(engine: Engine, clock: Clock, values: list[float], step: float, rid: str = "vm1") -> list[str]:
    """One sample per step; returns the alarm state after each."""
    states = []
    for v in values:
        engine.on_sample(sample(v, rid), clock.now)
        states.append(next(iter(engine.alarms.values())).state)
        clock.now += step
    return states


def test_single_breach_fires_at_once_with_evaluation_periods_1() -> None:
    clock = Clock()
    e = Engine(clock)
    e.add(threshold())
    e.on_sample(sample(90), clock.now)
    transitions, dirty = e.take()
    assert [(t.previous, t.current) for t in transitions] == [("insufficient data", "alarm")]
    assert transitions[0].reason_data == {"type": "threshold", "disposition": "outside", "count": 1,
                                          "most_recent": 90.0}
    assert dirty[0].state == "alarm"


def test_flapping_input_does_not_flap_the_alarm() -> None:
    """Every period in the window must agree: lone spikes and dips change nothing."""
    clock = Clock()
    e = Engine(clock)
    e.add(threshold(n=3, period=10))
    steady = [50.0] * 4 + [99.0] + [50.0] * 3 + [99.0] + [50.0] * 3
    states = feed(e, clock, steady, step=10)
    assert set(states[2:]) == {"ok"}, states
    # three full periods above the threshold: now it fires, once
    states = feed(e, clock, [90.0, 91.0, 92.0], step=10)
    assert states[-1] == "alarm"
    # one dip below does not clear it
    states = feed(e, clock, [10.0, 95.0], step=10)
    assert states == ["alarm", "alarm"]
    changes = [(t.previous, t.current) for t in e.take()[0]]
    assert changes == [("insufficient data", "ok"), ("ok", "alarm")]


def test_insufficient_data_when_data_stops() -> None:
    clock = Clock()
    e = Engine(clock)
    e.add(threshold(period=10))
    e.on_sample(sample(20), clock.now)
    assert e.alarms[next(iter(e.alarms))].state == "ok"
    clock.now += 15
    e.tick()  # still inside the look-back period: no change
    assert next(iter(e.alarms.values())).state == "ok"
    clock.now += 10
    e.tick()
    alarm = next(iter(e.alarms.values()))
    assert alarm.state == "insufficient data"
    assert "datapoints are unknown" in alarm.state_reason


def test_fresh_start_does_not_claim_insufficient_data_before_a_full_window() -> None:
    clock = Clock()
    e = Engine(clock)
    a = threshold(period=10, n=2)
    a.state = "alarm"  # as restored from the store after a restart
    e.add(a)
    clock.now += 5
    e.tick()
    assert a.state == "alarm"
    clock.now += 30
    e.tick()
    assert a.state == "insufficient data"


def test_group_by_resource_gives_each_its_own_state() -> None:
    clock = Clock()
    e = Engine(clock)
    a = threshold(group_by=["resource_id"])
    e.add(a)
    e.on_sample(sample(90, "vm1"), clock.now)
    e.on_sample(sample(10, "vm2"), clock.now)
    ts, _ = e.take()
    assert {(t.labels["resource_id"], t.current) for t in ts} == {("vm1", "alarm"), ("vm2", "ok")}
    assert a.state == "alarm"
    assert a.model_extra["group_states"] == {'["vm1"]': "alarm", '["vm2"]': "ok"}


def test_query_on_metadata_like_heat_server_group() -> None:
    clock = Clock()
    e = Engine(clock)
    a = threshold(query=[{"field": "metadata.user_metadata.server_group", "op": "eq", "value": "web"}])
    e.add(a)
    e.on_sample(sample(99, user_metadata={"server_group": "db"}), clock.now)
    assert a.state == "insufficient data"
    e.on_sample(sample(99, user_metadata={"server_group": "web"}), clock.now)
    assert a.state == "alarm"


def test_gnocchi_aggregation_by_resources_maps_onto_samples() -> None:
    a = Alarm.model_validate({
        "name": "scale-up", "type": "gnocchi_aggregation_by_resources_threshold",
        "gnocchi_aggregation_by_resources_threshold_rule": {
            "metric": "cpu_util", "aggregation_method": "mean", "granularity": 60, "evaluation_periods": 1,
            "threshold": 50, "comparison_operator": "gt", "resource_type": "instance",
            "query": '{"=": {"server_group": "stack-1"}}'}})
    r = a.threshold_rule
    assert (r.meter_name, r.statistic, r.period) == ("cpu_util", "avg", 60)
    clock = Clock()
    e = Engine(clock)
    e.add(a)
    e.on_sample(sample(80, user_metadata={"server_group": "stack-1"}), clock.now)
    assert a.state == "alarm"
    assert a.to_aodh()["gnocchi_aggregation_by_resources_threshold_rule"]["metric"] == "cpu_util"


def test_gnocchi_rate_methods_take_the_statistic_of_consecutive_differences() -> None:
    """``rate:mean`` on a cumulative ``cpu`` (ns), per resource: the first sample only starts the rate."""
    a = Alarm.model_validate({
        "name": "cpu-rate", "type": "gnocchi_resources_threshold",
        "gnocchi_resources_threshold_rule": {
            "metric": "cpu", "resource_id": "vm1", "resource_type": "instance", "aggregation_method": "rate:mean",
            "granularity": 60, "threshold": 25e9, "comparison_operator": "gt"}})
    assert (a.threshold_rule.rate, a.threshold_rule.statistic) == (True, "avg")
    clock = Clock()
    e = Engine(clock)
    e.add(a)
    cpu = {"counter_name": "cpu", "resource_id": "vm1", "resource_metadata": {}}
    for ns, state in [(100e9, "insufficient data"), (120e9, "ok"), (160e9, "alarm")]:
        e.on_sample({**cpu, "counter_volume": ns}, clock.now)
        assert a.state == state, ns
        clock.now += 10
    assert a.state_reason.endswith("most recent: 30000000000.0")  # (20 + 40) / 2 s of CPU in the minute


def test_gnocchi_rules_need_aodhs_fields() -> None:
    with pytest.raises(ValueError, match="resource_id, resource_type must be set"):
        Alarm.model_validate({"name": "x", "type": "gnocchi_resources_threshold", "gnocchi_resources_threshold_rule": {
            "metric": "cpu", "aggregation_method": "mean", "threshold": 1}})
    with pytest.raises(ValueError, match="must exist in this server's Gnocchi API"):
        Alarm.model_validate({"name": "x", "type": "gnocchi_aggregation_by_metrics_threshold",
                              "gnocchi_aggregation_by_metrics_threshold_rule": {
                                  "metrics": ["m1"], "aggregation_method": "mean", "threshold": 1}})
    with pytest.raises(ValueError, match="aggregation_method 'std' is not supported"):
        Alarm.model_validate({"name": "x", "type": "gnocchi_aggregation_by_resources_threshold",
                              "gnocchi_aggregation_by_resources_threshold_rule": {
                                  "metric": "cpu", "query": "{}", "resource_type": "instance",
                                  "aggregation_method": "std", "threshold": 1}})


def test_composite_and_or_over_rules_and_other_alarms() -> None:
    clock = Clock()
    e = Engine(clock)
    base = threshold(name="base")
    e.add(base)
    comp = Alarm(name="both", type="composite", composite_rule={"and": [
        {"alarm_id": base.alarm_id},
        {"or": [{"type": "threshold", "meter_name": "memory.usage", "threshold": 1000,
                 "comparison_operator": "gt", "period": 30}]}]})
    e.add(comp)
    e.on_sample(sample(90), clock.now)
    assert base.state == "alarm" and comp.state == "insufficient data"
    e.on_sample({"counter_name": "memory.usage", "counter_volume": 2000, "resource_id": "vm1"}, clock.now)
    assert comp.state == "alarm"
    e.on_sample({"counter_name": "memory.usage", "counter_volume": 10, "resource_id": "vm1"}, clock.now + 31)
    clock.now += 31
    e.on_sample({"counter_name": "memory.usage", "counter_volume": 10, "resource_id": "vm1"}, clock.now)
    assert comp.state == "ok"


def test_time_constraints_pause_evaluation() -> None:
    clock = Clock()
    e = Engine(clock)
    hour = datetime.fromtimestamp(T0, timezone.utc).hour
    a = threshold()
    a.time_constraints = Alarm.model_validate({**a.model_dump(), "time_constraints": [
        {"name": "later", "start": f"0 {(hour + 2) % 24} * * *", "duration": 600}]}).time_constraints
    e.add(a)
    e.on_sample(sample(99), clock.now)
    assert a.state == "insufficient data"
    a2 = threshold(name="now")
    a2.time_constraints = Alarm.model_validate({**a2.model_dump(), "time_constraints": [
        {"name": "this-hour", "start": f"0 {hour} * * *", "duration": 3600, "timezone": "UTC"}]}).time_constraints
    e.add(a2)
    e.on_sample(sample(99), clock.now)
    assert a2.state == "alarm"


def test_event_alarm_on_notification_traits() -> None:
    clock = Clock()
    e = Engine(clock)
    a = Alarm(name="inst-err", type="event", event_rule={
        "event_type": "compute.instance.*", "query": [{"field": "traits.state", "op": "eq", "value": "error"}]})
    e.add(a)
    e.on_event({"event_type": "compute.instance.update", "state": "active", "traits": {"state": "active"}}, T0)
    assert a.state == "insufficient data"
    e.on_event({"event_type": "compute.instance.update", "message_id": "m1", "traits": {"state": "error"}}, T0)
    assert a.state == "alarm"
    t = e.take()[0][0]
    assert t.reason.startswith("Event <id=m1,event_type=compute.instance.update> hits the query")


def test_log_alarms_count_and_seen_with_evidence() -> None:
    clock = Clock()
    e = Engine(clock)
    count = Alarm(name="errors", type="log", log_rule={
        "query": "level:ERROR AND component:nova", "mode": "count", "period": 60, "threshold": 3})
    seen = Alarm(name="crit", type="log", log_rule={"query": "NoValidHost", "mode": "seen", "period": 60})
    e.add(count)
    e.add(seen)
    for i in range(3):
        e.on_event({"level": "ERROR", "component": "nova", "message": f"boom {i}"}, clock.now)
    e.on_event({"level": "ERROR", "component": "glance", "message": "other"}, clock.now)
    assert count.state == "alarm" and seen.state == "insufficient data"
    e.on_event({"level": "ERROR", "component": "nova-scheduler",
                "message": "NoValidHost: No valid host was found."}, clock.now)
    assert seen.state == "alarm"
    t = [t for t in e.take()[0] if t.alarm is seen][0]
    assert t.reason_data["events"][0]["message"].startswith("NoValidHost")
    clock.now += 61
    e.tick()
    assert count.state == "ok" and seen.state == "ok"


def test_a_batch_of_events_skips_repeats_and_hands_back_the_one_that_failed() -> None:
    """``on_events``: a redelivered event (not fresh) is not counted again, and an event the engine
    cannot read is handed back with its error while the events after it are still evaluated."""
    clock = Clock()
    e = Engine(clock)
    count = Alarm(name="errors", type="log", log_rule={
        "query": "level:ERROR AND component:nova", "mode": "count", "period": 60, "threshold": 2})
    e.add(count)

    class Unreadable(dict):
        def get(self, *args):
            raise ValueError("unreadable")

    error = {"level": "ERROR", "component": "nova", "message": "boom"}
    bad = Unreadable()
    failed = e.on_events([error, bad, dict(error)], [False, True, True])
    assert [(d, str(exc)) for d, exc in failed] == [(bad, "unreadable")]
    assert count.state == "ok"  # one counted of the two needed: the first was a repeat
    assert e.on_events([dict(error)], [True]) == [] and count.state == "alarm"


def test_manual_state_is_recorded() -> None:
    clock = Clock()
    e = Engine(clock)
    a = threshold()
    e.add(a)
    t = e.set_state(a.alarm_id, "alarm")
    assert t is not None and t.manual and a.state == "alarm"


def test_condition_text_as_ceilometer_shows_it() -> None:
    assert condition_text(threshold()) == "cpu_util > 75.0 during 1 x 30s"


def test_bad_definitions_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="threshold_rule must be set"):
        Alarm(name="x", type="threshold")
    with pytest.raises(ValueError, match="unsupported alarm type"):
        Alarm(name="x", type="nope")
    with pytest.raises(ValueError, match="not a cron expression"):
        Alarm.model_validate({**threshold().model_dump(), "time_constraints": [
            {"name": "a", "start": "bad cron", "duration": 1}]})
    with pytest.raises(QuerySyntaxError):
        compile_query("level:ERROR AND (component:nova")


@pytest.mark.parametrize("query,doc,expected", [
    ("level:ERROR AND component:nova", {"level": "ERROR", "component": "nova"}, True),
    ("level:ERROR AND component:nova", {"level": "ERROR", "component": "glance"}, False),
    ("component:nov*", {"component": "nova"}, True),
    ('message:"No valid host"', {"message": "x No valid host was found"}, True),
    ("NOT level:INFO", {"level": "INFO"}, False),
    ("(level:ERROR OR level:CRITICAL) AND -host:cn01", {"level": "CRITICAL", "host": "cc01"}, True),
    ("payload.state:error", {"payload": {"state": "error"}}, True),
    ("pid:>100", {"pid": 512}, True),
    ("tags:_grokparsefailure", {"tags": ["a", "_grokparsefailure"]}, True),
])
def test_matcher(query: str, doc: dict, expected: bool) -> None:
    assert compile_query(query)(doc) is expected


def test_repeat_actions_repeat_once_per_period_on_the_tick() -> None:
    clock = Clock()
    e = Engine(clock)
    a = threshold(period=10)
    a.repeat_actions = True
    e.add(a)
    e.on_sample(sample(99), clock.now)
    e.take()
    for _ in range(4):  # 4 ticks within one period: one repeat
        clock.now += 2
        e.on_sample(sample(99), clock.now)
        e.tick()
    repeats = e.take()[0]
    assert [(t.previous, t.current) for t in repeats] == [("alarm", "alarm")]


LOG_QUERIES = [
    "level:ERROR AND component:nova", "level:critical", "component:NOVA AND NoValidHost", "status:500",
    "http.status:ok", "level:error OR component:glance", "host:cn0*", "tags:_grokparsefailure AND level:info",
    '"failed to spawn"', "NOT level:INFO", "level:ERROR AND NOT component:nova", "user_id:u-ß",
]
LOG_EVENTS = [
    {"level": "ERROR", "component": "nova", "message": "boom"},
    {"level": "error", "component": ["Nova", "cinder"], "message": "Instance failed to spawn"},
    {"level": "CRITICAL", "component": "glance", "host": "cn01", "message": "NoValidHost"},
    {"level": "INFO", "tags": ["_grokparsefailure"], "status": 500, "message": "x"},
    {"level": "INFO", "status": "500", "http": {"status": "OK"}, "component": "nova", "message": "NoValidHost"},
    {"level": ["ERROR", "error"], "component": "nova", "message": "twice the same level"},
    {"component": "nova", "user_id": "U-SS", "message": "no level at all"},
    {"level": 7, "component": None, "message": ""},
    {"level": "WARNING", "status": "5e2", "message": "a number written otherwise"},
]


def test_log_alarms_indexed_by_their_field_equality_see_what_their_query_matches() -> None:
    """An event reaches only the log alarms on its own field values: exactly those whose query matches it."""
    clock = Clock()
    e = Engine(clock)
    alarms = [Alarm(name=f"log{i}", type="log", log_rule={"query": q, "mode": "count", "period": 600,
                                                            "threshold": 1000}) for i, q in enumerate(LOG_QUERIES)]
    for a in alarms:
        e.add(a)
    assert e.log_keyed and e.log_unkeyed  # both paths are exercised
    for doc in LOG_EVENTS:
        e.on_event(doc, clock.now)
    for a, q in zip(alarms, LOG_QUERIES):
        want = sum(1 for d in LOG_EVENTS if compile_query(q)(d))
        assert len(e.log_units[a.alarm_id].hits) == want, q


def test_replacing_or_removing_a_log_alarm_leaves_no_stale_index_entry() -> None:
    clock = Clock()
    e = Engine(clock)
    a = Alarm(name="x", type="log", log_rule={"query": "level:ERROR", "mode": "seen", "period": 60})
    e.add(a)
    e.add(a.model_copy(update={"log_rule": a.log_rule.model_copy(update={"query": "component:nova"})}))
    e.on_event({"level": "ERROR", "component": "glance", "message": "m"}, clock.now)
    assert not e.log_units[a.alarm_id].hits
    e.on_event({"level": "INFO", "component": "nova", "message": "m"}, clock.now)
    assert len(e.log_units[a.alarm_id].hits) == 1
    e.remove(a.alarm_id)
    assert e.log_keyed == {} and e.log_unkeyed == {} and e.log_units == {}
