"""The rule engine inside a running server (in-process Runtime + MemoryBus + real HTTP API)."""

from __future__ import annotations

import hashlib

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from telemetry.bus.records import publish_records
from telemetry.config import Settings
from telemetry.daemon import Daemon
from telemetry.models import AlarmTransition, Event, Notification, Sample, decode

CPU_ALARM = {"name": "cpu-high", "type": "threshold", "alarm_actions": ["http://127.0.0.1:9/alarm"],
             "ok_actions": ["http://127.0.0.1:9/ok"],
             "threshold_rule": {"meter_name": "cpu_util", "threshold": 75, "comparison_operator": "gt",
                                "period": 1, "evaluation_periods": 1}}


class Server:
    """A server-mode daemon in this event loop, with a consumer on alarm_transitions."""

    def __init__(self, tmp: Path, rules: dict[str, Any] | None = None) -> None:
        self.tmp = tmp
        self.rules = rules or {"paths": [str(tmp / "rules")]}

    async def __aenter__(self) -> Server:
        (self.tmp / "rules").mkdir(exist_ok=True)
        settings = Settings(data_dir=self.tmp / "data", host="test-host", api={"port": 0},
                            rules={"tick": 0.2, **self.rules})
        self.daemon = Daemon(settings, mode="server")
        self.rt = await self.daemon.start()
        self.transitions = await self.rt.bus.subscribe(["alarm_transitions"], "test")
        self.http = httpx.AsyncClient(base_url=self.rt.api_address, timeout=10)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.aclose()
        await self.transitions.close()
        await self.daemon.stop()

    async def send(self, *records: Any) -> None:
        await publish_records(self.rt.bus, list(records))

    async def next_transitions(self, n: int = 1, timeout: float = 5.0,
                               alarm_id: str | None = None) -> list[AlarmTransition]:
        """Transitions (of ``alarm_id`` only, when given) until ``n`` arrived or the timeout passed."""
        got: list[AlarmTransition] = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            ds = await self.transitions.fetch(100, 0.2)
            await self.transitions.ack(ds)
            got += [t for t in (decode(AlarmTransition, d.value) for d in ds) if alarm_id in (None, t.alarm_id)]
        return got

    async def state(self, alarm_id: str) -> str:
        return (await self.http.get(f"/v2/alarms/{alarm_id}/state")).json()


def cpu(value: float, rid: str = "vm1", **kw: Any) -> Sample:
    return Sample(counter_name="cpu_util", counter_type="gauge", counter_unit="%", counter_volume=value,
                  resource_id=rid, **kw)


async def test_aodh_crud_shape_and_errors(tmp_path: Path) -> None:
    async with Server(tmp_path) as s:
        r = await s.http.post("/v2/alarms", json=CPU_ALARM, headers={"X-Project-Id": "p1", "X-User-Id": "u1"})
        assert r.status_code == 201, r.text
        alarm = r.json()
        aid = alarm["alarm_id"]
        assert r.headers["location"].endswith(f"/v2/alarms/{aid}")
        assert alarm["state"] == "insufficient data" and alarm["project_id"] == "p1"
        assert alarm["threshold_rule"]["meter_name"] == "cpu_util" and alarm["severity"] == "low"
        for key in ("enabled", "repeat_actions", "time_constraints", "timestamp", "state_timestamp", "description"):
            assert key in alarm
        dup = await s.http.post("/v2/alarms", json=CPU_ALARM, headers={"X-Project-Id": "p1"})
        assert dup.status_code == 409
        bad = await s.http.post("/v2/alarms", json={"name": "x", "type": "threshold"})
        assert bad.status_code == 400 and "threshold_rule must be set" in bad.json()["error_message"]["faultstring"]
        listed = (await s.http.get("/v2/alarms", params={"q.field": "name", "q.op": "eq", "q.value": "cpu-high"})).json()
        assert [a["alarm_id"] for a in listed] == [aid]
        body = {**alarm, "threshold_rule": {**alarm["threshold_rule"], "threshold": 90}}
        upd = await s.http.put(f"/v2/alarms/{aid}", json=body)
        assert upd.status_code == 200 and upd.json()["threshold_rule"]["threshold"] == 90
        assert (await s.http.put(f"/v2/alarms/{aid}/state", json="alarm")).json() == "alarm"
        assert await s.state(aid) == "alarm"
        assert (await s.http.put(f"/v2/alarms/{aid}/state", json="bogus")).status_code == 400
        history = (await s.http.get(f"/v2/alarms/{aid}/history")).json()
        assert [h["type"] for h in history] == ["state transition", "rule change", "creation"]
        assert (await s.http.delete(f"/v2/alarms/{aid}")).status_code == 204
        assert (await s.http.get(f"/v2/alarms/{aid}")).status_code == 404
        assert (await s.http.get(f"/v2/alarms/{aid}/history")).json()[0]["type"] == "deletion"


async def test_breach_publishes_transition_with_actions_and_history(tmp_path: Path) -> None:
    async with Server(tmp_path) as s:
        aid = (await s.http.post("/v2/alarms", json=CPU_ALARM)).json()["alarm_id"]
        t0 = time.monotonic()
        await s.send(cpu(95))
        [t] = await s.next_transitions()
        assert time.monotonic() - t0 < 1.0  # fires within a second, not after an evaluation cycle
        assert (t.alarm_id, t.previous, t.current) == (aid, "insufficient data", "alarm")
        assert t.actions == ["http://127.0.0.1:9/alarm"] and t.alarm_type == "threshold"
        assert t.labels["meter"] == "cpu_util" and t.repeat_actions is False
        assert t.evaluated_at
        # a redelivered copy of the same sample is not counted twice; a fresh low one clears it
        await s.send(cpu(10))
        [t2] = await s.next_transitions()
        assert (t2.previous, t2.current) == ("alarm", "ok") and t2.actions == ["http://127.0.0.1:9/ok"]
        history = (await s.http.get(f"/v2/alarms/{aid}/history")).json()
        assert [h["type"] for h in history][:2] == ["state transition", "state transition"]


async def test_insufficient_data_when_data_stops(tmp_path: Path) -> None:
    async with Server(tmp_path) as s:
        aid = (await s.http.post("/v2/alarms", json=CPU_ALARM)).json()["alarm_id"]
        await s.send(cpu(20))
        assert [t.current for t in await s.next_transitions()] == ["ok"]
        ts = await s.next_transitions(timeout=4)  # no more data: after the look-back period it is unknown
        assert [t.current for t in ts] == ["insufficient data"]
        assert await s.state(aid) == "insufficient data"


async def test_flapping_stream_does_not_flap(tmp_path: Path) -> None:
    alarm = {**CPU_ALARM, "threshold_rule": {**CPU_ALARM["threshold_rule"], "evaluation_periods": 3, "period": 1}}
    async with Server(tmp_path) as s:
        aid = (await s.http.post("/v2/alarms", json=alarm)).json()["alarm_id"]
        now = time.time()
        await s.send(*(cpu(10, timestamp=now - back) for back in (2, 1, 0)))
        assert [t.current for t in await s.next_transitions()] == ["ok"]
        # a noisy stream: spikes over the threshold between normal points, for several periods
        for i in range(8):
            await s.send(cpu(99 if i % 2 == 0 else 10, timestamp=time.time()))
            await asyncio.sleep(0.3)
        assert await s.next_transitions(timeout=0.3) == []
        assert await s.state(aid) == "ok"
        # a sustained breach (every period in the window over the threshold) does fire
        for _ in range(4):
            await s.send(cpu(99, timestamp=time.time()))
            await asyncio.sleep(0.5)
        for _ in range(3):
            await s.send(cpu(99, timestamp=time.time()))
            await asyncio.sleep(0.3)
        assert [t.current for t in await s.next_transitions()] == ["alarm"]


async def test_restart_in_the_middle_keeps_state_and_history(tmp_path: Path) -> None:
    async with Server(tmp_path) as s:
        aid = (await s.http.post("/v2/alarms", json={**CPU_ALARM, "threshold_rule": {
            **CPU_ALARM["threshold_rule"], "period": 5}})).json()["alarm_id"]
        await s.send(cpu(99))
        assert [t.current for t in await s.next_transitions()] == ["alarm"]
    async with Server(tmp_path) as s:  # same data folder: a restarted daemon
        assert await s.state(aid) == "alarm"
        assert [t.current for t in await s.next_transitions(timeout=1)] == []  # no spurious transition
        history = (await s.http.get(f"/v2/alarms/{aid}/history")).json()
        assert [h["type"] for h in history] == ["state transition", "creation"]
        await s.send(cpu(1))
        [t] = await s.next_transitions()
        assert (t.previous, t.current) == ("alarm", "ok")


async def test_event_and_log_alarms_through_the_bus(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.yaml").write_text(yaml.safe_dump({"alarms": [
        {"name": "nova-errors", "type": "log", "log_rule": {"query": "level:ERROR AND component:nova",
                                                            "mode": "count", "period": 60, "threshold": 2}},
        {"name": "novalidhost", "type": "log", "severity": "critical",
         "log_rule": {"query": "NoValidHost", "mode": "seen", "period": 60}},
        {"name": "instance-error", "type": "event", "event_rule": {
            "event_type": "compute.instance.update", "query": [{"field": "traits.state", "value": "error"}]}},
    ]}))
    async with Server(tmp_path) as s:
        await s.send(Event(host="cc01", component="nova", level="ERROR", message="first"),
                     Event(host="cc01", component="glance", level="ERROR", message="not nova"),
                     Notification(message_id="n1", event_type="compute.instance.update",
                                  publisher_id="compute.cn01", payload={"state": "active"}))
        assert {t.current for t in await s.next_transitions(n=2, timeout=0.5)} <= {"ok"}  # counted, no breach
        await s.send(Event(host="cc01", component="nova", level="ERROR", message="second"),
                     Event(host="cc01", component="nova-scheduler", level="ERROR",
                           message="NoValidHost: No valid host was found. There are not enough hosts available."),
                     Notification(message_id="n2", event_type="compute.instance.update",
                                  publisher_id="compute.cn01", payload={"state": "error", "instance_id": "i-1"}))
        ts = {t.alarm_name: t for t in await s.next_transitions(n=3) if t.current == "alarm"}
        assert set(ts) == {"nova-errors", "novalidhost", "instance-error"}
        assert ts["novalidhost"].reason_data["events"][0]["message"].startswith("NoValidHost")
        assert ts["nova-errors"].reason_data["count"] == 2  # nova-scheduler is not component:nova
        assert ts["instance-error"].reason_data["event"]["event_type"] == "compute.instance.update"


async def test_a_log_event_delivered_again_counts_once(tmp_path: Path) -> None:
    """The rules stage tells new events from redelivered ones a batch at a time (``RecentIds.fresh_many``):
    a copy within a batch, and a batch of copies alone, count nothing more."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.yaml").write_text(yaml.safe_dump({"alarms": [
        {"name": "nova-errors", "type": "log", "log_rule": {"query": "level:ERROR AND component:nova",
                                                            "mode": "count", "period": 60, "threshold": 2}}]}))
    async with Server(tmp_path) as s:
        first = Event(host="cc01", component="nova", level="ERROR", message="first")
        await s.send(first, first)
        await s.send(first)
        assert {t.current for t in await s.next_transitions(n=2, timeout=1.0)} <= {"ok"}  # one, not three
        await s.send(Event(host="cc01", component="nova", level="ERROR", message="second"))
        [breach] = [t for t in await s.next_transitions(n=1) if t.current == "alarm"]
        assert breach.reason_data["count"] == 2


async def test_triggers_from_templates_with_dependencies_and_ack(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "edge.yaml").write_text(yaml.safe_dump({"hosts": ["sw1"], "triggers": [
        {"name": "switch down", "expression": "last(/sw1/icmpping)=0", "severity": "disaster"}]}))
    (rules / "compute.yaml").write_text(yaml.safe_dump({"template": "compute", "macros": {"{$MAX}": 4}, "triggers": [
        {"name": "High load on {HOST.HOST}", "expression": "last(/{HOST.HOST}/load)>{$MAX}",
         "depends_on": ["sw1:switch down"], "severity": "high"}]}))
    async with Server(tmp_path, {"paths": [str(rules)], "hosts": {"cn01": ["compute"], "cn02": ["compute"]}}) as s:
        def item(host: str, key: str, v: float) -> Sample:
            return Sample(counter_name=key, counter_type="gauge", counter_volume=v, resource_id=host,
                          resource_metadata={"host": host})

        await s.send(item("sw1", "icmpping", 0))
        await s.send(item("cn01", "load", 9), item("cn02", "load", 9))
        ts = await s.next_transitions(n=3, timeout=1)
        assert [t.alarm_name for t in ts] == ["switch down"]  # the hosts behind it stay quiet
        assert ts[0].severity == "critical" and ts[0].labels["severity"] == "disaster"
        await s.send(item("sw1", "icmpping", 1))
        ts = await s.next_transitions(n=3)
        assert sorted(t.alarm_name for t in ts) == ["High load on cn01", "High load on cn02", "switch down"]
        triggers = (await s.http.get("/v1/triggers", params={"status": "PROBLEM"})).json()
        assert {t["host"] for t in triggers} == {"cn01", "cn02"}
        tid = triggers[0]["trigger_id"]
        r = await s.http.post(f"/v1/triggers/{tid}/acknowledge", json={"message": "on it"})
        assert r.json()["acknowledged"] and r.json()["acknowledges"][0]["message"] == "on it"
    async with Server(tmp_path, {"paths": [str(rules)], "hosts": {"cn01": ["compute"], "cn02": ["compute"]}}) as s:
        t = (await s.http.get(f"/v1/triggers/{tid}")).json()  # state and acks survive a restart
        assert t["status"] == "PROBLEM" and t["acknowledged"]


async def test_group_by_resource_and_default_rules_load(tmp_path: Path) -> None:
    async with Server(tmp_path, {"paths": ["rules/"]}) as s:
        names = {a["name"] for a in (await s.http.get("/v2/alarms")).json()}
        assert {"host-cpu-high", "log-critical-seen", "instance-error-state"} <= names
        alarm = {**CPU_ALARM, "name": "per-vm", "threshold_rule": {**CPU_ALARM["threshold_rule"],
                                                                  "group_by": ["resource_id"]}}
        aid = (await s.http.post("/v2/alarms", json=alarm)).json()["alarm_id"]
        await s.send(cpu(99, "vm1"), cpu(5, "vm2"))
        ts = await s.next_transitions(n=2, alarm_id=aid)
        assert {(t.labels["resource_id"], t.current) for t in ts} == {("vm1", "alarm"), ("vm2", "ok")}


@pytest.mark.parametrize("written", ["plain", "sha256"])
async def test_tokens_guard_reads_and_writes_and_a_read_token_cannot_create(tmp_path: Path, written: str) -> None:
    token, reader = "s3cret", "r3ader"
    entry = token if written == "plain" else "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    settings = Settings(data_dir=tmp_path / "d", api={"port": 0, "tokens": [
                            entry, {"sha256": hashlib.sha256(reader.encode()).hexdigest(), "scope": "read"}]},
                        rules={"paths": [str(tmp_path / "none")]},
                        actions={"allowed_targets": ["127.0.0.0/8"]})  # with tokens, this host is not open by default
    d = Daemon(settings, mode="server")
    rt = await d.start()
    try:
        async with httpx.AsyncClient(base_url=rt.api_address) as c:
            assert (await c.post("/v2/alarms", json=CPU_ALARM)).status_code == 401
            refused = await c.post("/v2/alarms", json=CPU_ALARM, headers={"X-Auth-Token": reader})
            assert refused.status_code == 403 and "needs write" in refused.text
            ok = await c.post("/v2/alarms", json=CPU_ALARM, headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 201
            assert (await c.get("/v2/alarms")).status_code == 401
            listed = await c.get("/v2/alarms", headers={"X-Auth-Token": reader})
            assert listed.status_code == 200 and [a["alarm_id"] for a in listed.json()] == [ok.json()["alarm_id"]]
    finally:
        await d.stop()


async def test_a_failed_publish_is_retried_not_lost(tmp_path: Path) -> None:
    async with Server(tmp_path) as s:
        aid = (await s.http.post("/v2/alarms", json=CPU_ALARM)).json()["alarm_id"]
        real = s.rt.bus.publish
        failures = []

        async def flaky(topic: str, messages: Any) -> Any:
            if topic == "alarm_transitions" and not failures:
                failures.append(topic)
                from telemetry.bus import BusError

                raise BusError("broker went away")
            return await real(topic, messages)

        s.rt.bus.publish = flaky  # type: ignore[method-assign]
        await s.send(cpu(99))
        ts = await s.next_transitions(n=1, timeout=3)
        assert failures and [(t.alarm_id, t.current) for t in ts] == [(aid, "alarm")]  # once, after the retry
        assert ts[0].transition_id


async def test_bad_samples_are_dead_lettered_and_good_ones_still_fire(tmp_path: Path) -> None:
    from telemetry.bus import OutMessage
    from telemetry.models import encode

    async with Server(tmp_path) as s:
        dead = await s.rt.bus.subscribe(["dead_letter"], "test-dl")
        aid = (await s.http.post("/v2/alarms", json=CPU_ALARM)).json()["alarm_id"]
        bad = b'{"counter_name": "cpu_util", "counter_type": "gauge", "counter_volume": "lots", "resource_id": "vm1"}'
        await s.rt.bus.publish("samples", [OutMessage(value=bad), OutMessage(value=b"\xc1 not msgpack"),
                                           OutMessage(value=encode(cpu(97), "msgpack"))])
        [t] = await s.next_transitions()
        assert (t.alarm_id, t.current) == (aid, "alarm")
        letters = await dead.fetch(10, 2)
        reasons = sorted(d.headers["reason"] for d in letters)
        assert len(reasons) == 2 and reasons[0] == "invalid:counter_volume", reasons
        assert all(d.headers["stage"] == "stage.pipeline" for d in letters)  # the first stage to read samples
        await dead.close()


def test_a_broker_batch_is_decoded_in_order_with_one_count(tmp_path: Path) -> None:
    """Behind a broker the rules stage reads samples by their fast path and the rest through the models in
    one call: the records keep their order, bad ones come back with their reason, each counted once."""
    from telemetry.bus import Delivery
    from telemetry.bus.memory import MemoryBus
    from telemetry.metrics import RECORDS_IN
    from telemetry.models import encode
    from telemetry.rules.stage import RulesStage
    from telemetry.runtime import Runtime

    rt = Runtime(settings=Settings(data_dir=tmp_path), mode="server", bus=MemoryBus(), data_dir=tmp_path)
    stage = RulesStage(rt)
    slow = b'{"counter_name": "cpu_util", "counter_type": "gauge", "counter_volume": "97", "resource_id": "vm1"}'
    event = Event(host="cc01", component="nova", level="ERROR", message="boom")
    given = [Delivery("metered_samples", encode(cpu(91))), Delivery("events", encode(event)),
             Delivery("metered_samples", slow), Delivery("events", b"not json"),
             Delivery("metered_samples", encode(cpu(93), "msgpack"), redelivered=True)]
    counted = RECORDS_IN.labels(stage=stage.name)._value.get()
    good, bad = stage._decode(given)
    assert [d for d, _ in good] == [given[0], given[1], given[2], given[4]]
    assert [r["counter_volume"] if isinstance(r, dict) and "counter_volume" in r else type(r).__name__
            for _, r in good] == [91.0, "dict", "Sample", 93.0]
    assert [(d, reason.split(":")[0]) for d, reason in bad] == [(given[3], "undecodable")]
    assert RECORDS_IN.labels(stage=stage.name)._value.get() == counted + 4
