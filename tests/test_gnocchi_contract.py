"""One gnocchiclient test, run against the real Gnocchi server and against our ``/gnocchi`` API.

The same calls Ceilometer's publisher, Aodh and an operator make: an archive
policy, a resource type, resources with metrics, a batch of measures, reads
at each granularity (``gnocchi measures show``, the CLI of
``openstack metric measures show``), search, aggregates across resources and
across metrics, and the refusals the clients turn into their own
exceptions. Every figure is checked against a computation in the test, so
both servers are held to the same numbers.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.gnocchi_support import RealGnocchi, client
from tests.support import wait_until

BIN = Path(sys.executable).parent
POLICY = {"name": "contract", "back_window": 0,
          "aggregation_methods": ["mean", "max", "min", "sum", "count", "last", "std", "rate:mean"],
          "definition": [{"granularity": "1 minute", "timespan": "1 day"},
                         {"granularity": "1 hour", "timespan": "7 days"}]}


class Side:
    def __init__(self, name: str, endpoint: str) -> None:
        self.name = name
        self.endpoint = endpoint
        self.basic = name == "gnocchi"
        self.c = client(endpoint, basic=self.basic)

    def cli(self, *args: str) -> Any:
        auth = (["--os-auth-type", "gnocchi-basic", "--user", "admin"] if self.basic else
                ["--os-auth-type", "gnocchi-noauth", "--user-id", "u1", "--project-id", "p1"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        out = subprocess.run([str(BIN / "gnocchi"), *auth, "--endpoint", self.endpoint, *args, "-f", "json"],
                             capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0, out.stderr + out.stdout
        return json.loads(out.stdout)


@pytest.fixture(params=["ours", "gnocchi"])
def side(request: pytest.FixtureRequest, daemon_factory: Any, tmp_path: Path) -> Iterator[Side]:
    if request.param == "ours":
        d = daemon_factory("run").start()
        yield Side("ours", d.url + "/gnocchi")
        return
    real = RealGnocchi(tmp_path / "gnocchi", free_port()).start()
    try:
        yield Side("gnocchi", real.url)
    finally:
        real.stop()


def _ts(t: datetime) -> str:
    return t.isoformat()


def _buckets(points: list[tuple[datetime, float]], seconds: int, fn: Any) -> list[list[Any]]:
    groups: dict[float, list[float]] = {}
    for t, v in points:
        b = t.timestamp() // seconds * seconds
        groups.setdefault(b, []).append(v)
    return [[_ts(datetime.fromtimestamp(b, timezone.utc)), float(seconds), fn(vs)] for b, vs in sorted(groups.items())]


def _rows(measures: list[Any]) -> list[list[Any]]:
    """gnocchiclient's (datetime, granularity, value) tuples as comparable rows."""
    return [[t.isoformat(), float(g), pytest.approx(v)] for t, g, v in measures]


def test_gnocchiclient_contract(side: Side) -> None:
    from gnocchiclient import exceptions as gexc

    c = side.c
    c.archive_policy.create(POLICY)
    with pytest.raises(gexc.ArchivePolicyAlreadyExists):
        c.archive_policy.create(POLICY)
    assert c.archive_policy.get("contract")["definition"] == [
        {"granularity": "0:01:00", "points": 1440, "timespan": "1 day, 0:00:00"},
        {"granularity": "1:00:00", "points": 168, "timespan": "7 days, 0:00:00"}]
    c.resource_type.create({"name": "contract_vm", "attributes": {
        "server_group": {"type": "string", "required": False, "max_length": 255},
        "flavor_id": {"type": "string", "required": True, "max_length": 255}}})

    ids = [str(uuid.uuid4()) for _ in range(3)]
    groups = ["g1", "g1", "g2"]
    for rid, g in zip(ids, groups):
        made = c.resource.create("contract_vm", {"id": rid, "server_group": g, "flavor_id": "m1.small",
                                                 "project_id": "p1", "metrics": {"cpu": {"archive_policy_name":
                                                                                         "contract"}}})
        assert made["id"] == rid and made["server_group"] == g and set(made["metrics"]) == {"cpu"}
    with pytest.raises(gexc.ResourceAlreadyExists):
        c.resource.create("contract_vm", {"id": ids[0], "flavor_id": "x"})
    with pytest.raises(gexc.ResourceNotFound):
        c.resource.get("contract_vm", str(uuid.uuid4()))
    with pytest.raises(gexc.BadRequest):
        c.resource.create("contract_vm", {"id": str(uuid.uuid4())})  # flavor_id is required

    # 18 measures per resource over six minutes of the hour two hours back
    t0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    sent: dict[str, list[tuple[datetime, float]]] = {}
    batch: dict[str, Any] = {}
    for n, rid in enumerate(ids):
        pts = [(t0 + timedelta(seconds=20 * i), float((i * 7 + n * 3) % 11) + n) for i in range(18)]
        sent[rid] = pts
        batch[rid] = {"cpu": [{"timestamp": _ts(t), "value": v} for t, v in pts]}
    c.metric.batch_resources_metrics_measures(batch)

    # an unknown resource in a batch: Ceilometer's publisher reads the cause and creates it
    ghost = str(uuid.uuid4())
    with pytest.raises(gexc.BadRequest) as err:
        c.metric.batch_resources_metrics_measures({ghost: {"cpu": [{"timestamp": _ts(t0), "value": 1.0}]}},
                                                  create_metrics=True)
    assert isinstance(err.value.message, dict), err.value.message
    assert err.value.message["cause"] == "Unknown resources"
    assert [r["original_resource_id"] for r in err.value.message["detail"]] == [ghost]
    with pytest.raises(gexc.BadRequest, match=f"Unknown metrics: {ghost}/cpu"):
        c.metric.batch_resources_metrics_measures({ghost: {"cpu": [{"timestamp": _ts(t0), "value": 1.0}]}})

    # readable: every granularity, coarsest first, as `gnocchi measures show` prints them
    want_mean = (_buckets(sent[ids[0]], 3600, statistics.fmean) + _buckets(sent[ids[0]], 60, statistics.fmean))
    got = wait_until(lambda: (m := c.metric.get_measures("cpu", resource_id=ids[0], refresh=True)) and
                     len(m) == len(want_mean) and m, timeout=60, what=f"{side.name}: measures readable")
    assert _rows(got) == [[t, g, pytest.approx(v)] for t, g, v in want_mean]
    shown = side.cli("measures", "show", "--resource-id", ids[0], "cpu", "--granularity", "60",
                     "--aggregation", "max")
    want_max = _buckets(sent[ids[0]], 60, max)
    assert [[datetime.fromisoformat(r["timestamp"]).astimezone(timezone.utc).isoformat(), r["granularity"],
             r["value"]] for r in shown] == want_max

    # start/stop select whole buckets
    start, stop = t0 + timedelta(minutes=2), t0 + timedelta(minutes=4)
    # refresh: the real Gnocchi may not have processed this resource's measures yet (metricd is asynchronous)
    ranged = c.metric.get_measures("cpu", resource_id=ids[1], granularity=60, aggregation="min",
                                   start=start, stop=stop, refresh=True)
    want_min = [r for r in _buckets(sent[ids[1]], 60, min) if start.isoformat() <= r[0] < stop.isoformat()]
    assert _rows(ranged) == [[t, g, pytest.approx(v)] for t, g, v in want_min]
    metric_id = c.resource.get("contract_vm", ids[2])["metrics"]["cpu"]
    last = c.metric.get_measures(metric_id, granularity=3600, aggregation="last", refresh=True)
    assert _rows(last) == [[t0.isoformat(), 3600.0, pytest.approx(sent[ids[2]][-1][1])]]

    # search, then the aggregate across the server group (Aodh's by-resources alarm, Heat's scaling group)
    found = c.resource.search("contract_vm", query={"=": {"server_group": "g1"}})
    assert sorted(r["id"] for r in found) == sorted(ids[:2])
    agg = c.aggregates.fetch(["aggregate", "mean", ["metric", "cpu", "mean"]], search={"=": {"server_group": "g1"}},
                             resource_type="contract_vm", granularity=60, needed_overlap=0)
    per_res = [{r[0]: r[2] for r in _buckets(sent[rid], 60, statistics.fmean)} for rid in ids[:2]]
    want_agg = [[t, 60.0, statistics.fmean([p[t] for p in per_res])] for t in sorted(per_res[0])]
    assert _rows(agg["measures"]["aggregated"]) == [[t, g, pytest.approx(v)] for t, g, v in want_agg]

    # across metrics by id (Aodh's by-metrics alarm), with arithmetic on top
    m0, m1 = (c.resource.get("contract_vm", rid)["metrics"]["cpu"] for rid in ids[:2])
    both = c.aggregates.fetch(f"(* (aggregate max (metric ({m0} max) ({m1} max))) 2)", granularity=60)
    maxes = [{r[0]: r[2] for r in _buckets(sent[rid], 60, max)} for rid in ids[:2]]
    want_both = [[t, 60.0, 2 * max(p[t] for p in maxes)] for t in sorted(maxes[0])]
    assert _rows(both["measures"]["aggregated"]) == [[t, g, pytest.approx(v)] for t, g, v in want_both]
    # per resource, without aggregation: grouped by resource id and metric name
    per = c.aggregates.fetch("(metric cpu sum)", search={"=": {"server_group": "g2"}}, resource_type="contract_vm",
                             granularity=3600)
    assert _rows(per["measures"][ids[2]]["cpu"]["sum"]) == [[t0.isoformat(), 3600.0,
                                                            pytest.approx(sum(v for _, v in sent[ids[2]]))]]

    # the sample standard deviation, and the rate (mean of consecutive differences) per minute
    std = c.metric.get_measures("cpu", resource_id=ids[0], granularity=60, aggregation="std")
    assert _rows(std) == [[t, g, pytest.approx(v)] for t, g, v in _buckets(sent[ids[0]], 60, statistics.stdev)]
    diffs = [(t, v - pv) for (_, pv), (t, v) in zip(sent[ids[0]], sent[ids[0]][1:])]
    rate = c.metric.get_measures("cpu", resource_id=ids[0], granularity=60, aggregation="rate:mean")
    assert _rows(rate) == [[t, g, pytest.approx(v)] for t, g, v in _buckets(diffs, 60, statistics.fmean)]

    # an aggregation the policy lacks is a 404, an unknown metric too
    with pytest.raises(gexc.NotFound):
        c.metric.get_measures("cpu", resource_id=ids[0], aggregation="median")
    with pytest.raises(gexc.MetricNotFound):
        c.metric.get(str(uuid.uuid4()))
    c.resource.delete(ids[2])
    with pytest.raises(gexc.ResourceNotFound):
        c.resource.get("contract_vm", ids[2])
