"""Our Gnocchi API's own guarantees: the catalogue survives restarts on both store backends, refusals
come in Gnocchi's form, the built-in resource types are Ceilometer's, and the small languages
(filters, operations, timespans) parse and evaluate as Gnocchi's do."""

from __future__ import annotations

import copy
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from telemetry.gnocchi.catalog import builtin_types
from telemetry.gnocchi.filters import compile_filter, parse_text
from telemetry.gnocchi.models import GnocchiError, Resource, to_seconds
from telemetry.gnocchi.operations import Evaluator, overlap_filter, parse, references
from tests.gnocchi_support import client

sys.path.insert(0, str(Path(__file__).parent))
from store_support import pg_database  # noqa: F401


def test_builtin_resource_types_are_ceilometers() -> None:
    from ceilometer import gnocchi_client as g

    want = copy.deepcopy(g.resources_initial)
    for op in g.resources_update_operations:
        if op["type"] == "create_resource_type":
            want[op["resource_type"]] = op["data"][0]["attributes"]
            continue
        for d in op["data"]:
            name = d["path"].split("/")[-1]
            if d["op"] == "add":
                want[op["resource_type"]][name] = {k: v for k, v in d["value"].items() if k != "options"}
            else:
                want[op["resource_type"]].pop(name, None)
    ours = {t.name: {k: a.render() for k, a in t.attributes.items()} for t in builtin_types() if t.name != "generic"}
    assert ours == want


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_catalogue_survives_a_restart_and_refusals_are_gnocchis(backend: str, daemon_factory: Any,
                                                                 request: pytest.FixtureRequest) -> None:
    config: dict[str, Any] = {"sources": {"host_metrics": {"enabled": False}}}
    if backend == "postgresql":
        config["store"] = {"samples": {"url": request.getfixturevalue("pg_database")}}
    d = daemon_factory("run", config=config).start()
    c = client(d.url + "/gnocchi")
    c.archive_policy.create({"name": "p5", "definition": [{"granularity": "5 seconds", "points": 720}],
                             "aggregation_methods": ["-std", "+last"]})
    assert set(c.archive_policy.get("p5")["aggregation_methods"]) == {"mean", "min", "max", "sum", "count", "last"}
    c.archive_policy_rule.create({"name": "disks", "metric_pattern": "disk.*", "archive_policy_name": "p5"})
    host = c.resource.create("host", {"id": "compute-7", "host_name": "compute-7"})
    assert host["original_resource_id"] == "compute-7" and host["id"] != "compute-7"  # Gnocchi's UUID5
    m = c.metric.create({"name": "disk.usage", "resource_id": "compute-7"})  # policy from the rule
    assert m["archive_policy"]["name"] == "p5"
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
    c.metric.add_measures(m["id"], [{"timestamp": (t0 + timedelta(seconds=i)).timestamp(), "value": i}
                                    for i in range(10)])
    before = c.metric.get_measures(m["id"], aggregation="last")
    assert [v for _, _, v in before] == _lasts(t0, 10, 5)
    c.resource_type.update("host", [{"op": "add", "path": "/attributes/rack",
                                     "value": {"type": "string", "required": True, "options": {"fill": "r1"}}}])
    assert c.resource.get("host", "compute-7")["rack"] == "r1"

    d.stop()
    d.start()
    c = client(d.url + "/gnocchi")
    again = c.resource.get("host", "compute-7")
    assert (again["id"], again["rack"], again["metrics"]) == (host["id"], "r1", {"disk.usage": m["id"]})
    assert c.metric.get_measures(m["id"], aggregation="last") == before
    assert c.archive_policy_rule.get("disks")["archive_policy_name"] == "p5"

    # refusals in Gnocchi's JSON, each with what was wrong
    base = d.url + "/gnocchi/v1"
    r = httpx.get(f"{base}/resource/host/{uuid.uuid4()}")
    assert r.status_code == 404 and r.json()["title"] == "Not Found" and "does not exist" in r.json()["description"]
    r = httpx.post(f"{base}/metric/{m['id']}/measures", content=b"{not json")
    assert r.status_code == 400 and "Unable to decode body" in r.json()["description"]
    r = httpx.post(f"{base}/metric/{m['id']}/measures", json=[{"timestamp": "yesterday-ish", "value": 1}])
    assert r.status_code == 400 and "timestamp" in r.json()["description"]
    r = httpx.post(f"{base}/metric/{m['id']}/measures", json=[{"timestamp": t0.isoformat(), "value": "many"}])
    assert r.status_code == 400 and "'many'" in r.json()["description"]
    r = httpx.get(f"{base}/metric/{m['id']}/measures", params={"aggregation": "std"})
    assert r.status_code == 404 and r.json()["description"]["cause"].startswith("Aggregation method")
    r = httpx.post(f"{base}/aggregates", json={"operations": "(aggregate mean (metric"})
    assert r.status_code == 400 and r.json()["description"]["cause"] == "Invalid operations"
    r = httpx.delete(f"{base}/archive_policy/p5")
    assert r.status_code == 400 and "still in use" in r.json()["description"]
    metrics = httpx.get(d.url + "/metrics").text
    assert 'telemetry_stage_records_rejected_total{reason="bad_request",stage="api.gnocchi"}' in metrics


def _lasts(t0: datetime, n: int, g: int) -> list[float]:
    out: dict[float, float] = {}
    for i in range(n):
        out[(t0.timestamp() + i) // g] = float(i)
    return [out[k] for k in sorted(out)]


def _res(**attrs: Any) -> Resource:
    now = datetime.now(timezone.utc)
    return Resource(id=str(uuid.uuid4()), original_resource_id="x", type="instance", started_at=now,
                    revision_start=now, attributes=attrs, project_id=attrs.pop("project_id", None))


def test_filters_in_json_and_text() -> None:
    a, b = _res(server_group="g1", vcpus=4, project_id="p1"), _res(server_group="g2", vcpus=2)
    q = {"and": [{"=": {"server_group": "g1"}}, {">=": {"vcpus": 3}}]}
    assert [compile_filter(q)(r) for r in (a, b)] == [True, False]
    assert parse_text("server_group='g1' and vcpus>=3") == q
    assert [compile_filter(parse_text("not server_group = 'g1' or project_id='p1'"))(r) for r in (a, b)] == [True,
                                                                                                             True]
    assert [compile_filter({"in": {"server_group": ["g2", "g3"]}})(r) for r in (a, b)] == [False, True]
    assert compile_filter({"like": {"server_group": "g%"}})(b)
    with pytest.raises(GnocchiError, match="unknown operator"):
        compile_filter({"~": {"server_group": "g1"}})


def test_operations_parse_and_evaluate() -> None:
    tree = parse("(* (aggregate mean (metric ((m1 mean) (m2 mean)))) 2)")
    assert tree == ["*", ["aggregate", "mean", ["metric", [["m1", "mean"], ["m2", "mean"]]]], 2.0]
    assert references(tree) == [("m1", "mean"), ("m2", "mean")]
    data = {("m1", "mean"): {0.0: 1.0, 60.0: 3.0, 120.0: 5.0}, ("m2", "mean"): {0.0: 3.0, 60.0: 5.0}}
    ev = Evaluator(lambda ref: {ref: data[ref]}, 60.0)
    assert ev.run(tree) == {("aggregated",): {0.0: 4.0, 60.0: 8.0, 120.0: 10.0}}
    assert overlap_filter(data, 100.0, None)[("m1", "mean")] == {0.0: 1.0, 60.0: 3.0}
    assert overlap_filter(data, 100.0, 0)[("m2", "mean")] == {0.0: 3.0, 60.0: 5.0, 120.0: 0.0}
    assert ev.run(["resample", "max", 120, ["metric", "m1", "mean"]]) == {("m1", "mean"): {0.0: 3.0, 120.0: 5.0}}
    assert ev.run(["rolling", "sum", 2, ["metric", "m1", "mean"]]) == {("m1", "mean"): {60.0: 4.0, 120.0: 8.0}}
    assert ev.run(["aggregate", "rate:mean", ["metric", "m1", "mean"]]) == {("aggregated",): {60.0: 2.0,
                                                                                            120.0: 2.0}}
    with pytest.raises(GnocchiError):
        ev.run(["lag", 1, ["metric", "m1", "mean"]])


@pytest.mark.parametrize(("text", "seconds"), [("5 minutes", 300), ("1 hour", 3600), ("30 days", 2592000),
                                               ("0:05:00", 300), ("7 days, 0:00:00", 604800), ("90", 90),
                                               ("1 day 2h", 93600)])
def test_timespans(text: str, seconds: float) -> None:
    assert to_seconds(text) == seconds
