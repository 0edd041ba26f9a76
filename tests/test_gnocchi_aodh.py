"""Aodh's Gnocchi alarm types through the real ``aodh`` CLI, fed by measures posted to our Gnocchi API.

The by-resources alarm is the one Heat's ``OS::Aodh::GnocchiAggregationByResourcesAlarm`` makes for an
autoscaling group: the mean of ``cpu_util`` over the instances whose ``server_group`` is the stack. Measures
go in through gnocchiclient, as Ceilometer's Gnocchi publisher sends them, and the breaching batch must
fire the webhook within a second (Aodh would wait for its next evaluation cycle).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from tests.actions_support import Receiver
from tests.gnocchi_support import client
from tests.support import aodh



def _create(url: str, *args: str) -> dict[str, Any]:
    out = aodh(url, "alarm", "create", *args, "-f", "json")
    assert out.returncode == 0, out.stderr + out.stdout
    created: dict[str, Any] = json.loads(out.stdout)
    return created


def _measures(value: float, at: datetime) -> list[dict[str, Any]]:
    return [{"timestamp": at.isoformat(), "value": value}]


async def test_aodh_gnocchi_alarms_fire_on_measures(daemon_factory: Any) -> None:
    hook = await Receiver().start()
    d = daemon_factory("run", config={"sources": {"host_metrics": {"enabled": False}},
                                      "actions": {"allowed_targets": ["127.0.0.0/8"]}, "rules": {"tick": 0.2}})
    try:
        await asyncio.to_thread(d.start)
        g = client(d.url + "/gnocchi")
        stack = f"stack-{uuid.uuid4().hex[:8]}"
        members = [str(uuid.uuid4()) for _ in range(2)]
        outsider = str(uuid.uuid4())
        for rid, group in [(members[0], stack), (members[1], stack), (outsider, "other")]:
            g.resource.create("instance", {"id": rid, "display_name": rid[:8], "flavor_id": "1", "flavor_name": "m1",
                                           "server_group": group, "project_id": "p1", "user_id": "u1",
                                           "metrics": {"cpu_util": {"archive_policy_name": "medium"}}})

        # what Heat's OS::Aodh::GnocchiAggregationByResourcesAlarm sends for a scaling group
        by_resources = _create(
            d.url, "--name", "scale-up", "--type", "gnocchi_aggregation_by_resources_threshold",
            "--metric", "cpu_util", "--threshold", "60", "--comparison-operator", "gt", "--aggregation-method",
            "mean", "--granularity", "60", "--evaluation-periods", "1", "--resource-type", "instance",
            "--query", json.dumps({"=": {"server_group": stack}}), "--alarm-action", f"{hook.url}/scale-up")
        assert (by_resources["resource_type"], by_resources["metric"]) == ("instance", "cpu_util")  # the CLI flattens the rule
        assert by_resources["state"] == "insufficient data"

        # the resources alarm on one instance, and the by-metrics alarm on both members' metric ids
        metric_ids = [g.resource.get("instance", rid)["metrics"]["cpu_util"] for rid in members]
        one = _create(d.url, "--name", "one-vm", "--type", "gnocchi_resources_threshold", "--metric", "cpu_util",
                      "--resource-id", members[1], "--resource-type", "instance", "--threshold", "80",
                      "--comparison-operator", "ge", "--aggregation-method", "max", "--granularity", "60",
                      "--alarm-action", f"{hook.url}/one-vm")
        pair = _create(d.url, "--name", "pair", "--type", "gnocchi_aggregation_by_metrics_threshold",
                       "--metrics", metric_ids[0], "--metrics", metric_ids[1], "--threshold", "150",
                       "--comparison-operator", "gt", "--aggregation-method", "sum", "--granularity", "60",
                       "--alarm-action", f"{hook.url}/pair")
        assert pair["metrics"] == metric_ids

        now = datetime.now(timezone.utc)
        # first measures: the group's mean is 40 (an outsider at 99 must not count): ok
        g.metric.batch_resources_metrics_measures({
            members[0]: {"cpu_util": {"archive_policy_name": "medium", "measures": _measures(30.0, now)}},
            members[1]: {"cpu_util": {"archive_policy_name": "medium", "measures": _measures(50.0, now)}},
            outsider: {"cpu_util": {"archive_policy_name": "medium", "measures": _measures(99.0, now)}},
        }, create_metrics=True)
        for aid in (by_resources["alarm_id"], one["alarm_id"], pair["alarm_id"]):
            state = await asyncio.to_thread(_wait_state, d.url, aid, "ok")
            assert state == "ok", aid
        assert not hook.requests

        later = now + timedelta(seconds=1)
        sent = time.time()
        g.metric.batch_resources_metrics_measures({members[0]: {"cpu_util": _measures(95.0, later)},
                                                   members[1]: {"cpu_util": _measures(90.0, later)}})
        got = await hook.wait(3, timeout=10)
        by_path = {r["path"]: r for r in got}
        assert set(by_path) == {"/scale-up", "/one-vm", "/pair"}
        for r in got:
            assert r["at"] - sent < 1.0, f"{r['path']} webhook after {r['at'] - sent:.3f}s"
        body = by_path["/scale-up"]["json"]
        assert (body["alarm_id"], body["alarm_name"], body["previous"], body["current"]) == (
            by_resources["alarm_id"], "scale-up", "ok", "alarm")
        # the minute's mean over the group (each member's mean, averaged: the same here): 66.25 > 60
        assert body["reason_data"]["most_recent"] == (30 + 50 + 95 + 90) / 4
        assert all(r["json"]["previous"] == "ok" for r in got)
        assert by_path["/one-vm"]["json"]["alarm_id"] == one["alarm_id"]
        # the sum crosses 150 with the first breaching measure of the batch, and fires on it
        assert by_path["/pair"]["json"]["reason_data"]["most_recent"] in (30 + 50 + 95, 30 + 50 + 90)

        # an alarm on a metric this server does not have is refused with the reason
        bad = aodh(d.url, "alarm", "create", "--name", "ghost", "--type", "gnocchi_aggregation_by_metrics_threshold",
                   "--metrics", str(uuid.uuid4()), "--threshold", "1", "--aggregation-method", "mean")
        assert bad.returncode != 0 and "does not exist" in bad.stderr + bad.stdout
    finally:
        await hook.stop()


def _wait_state(url: str, alarm_id: str, want: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = httpx.get(f"{url}/v2/alarms/{alarm_id}", timeout=5).json()["state"]
        if state == want:
            break
        time.sleep(0.1)
    return state
