"""The real Ceilometer Gnocchi publisher (``gnocchi://``) pointed at our ``/gnocchi`` API.

Configured as an operator would without Keystone: ``[service_credentials]``
with gnocchiclient's ``gnocchi-noauth`` plugin and our endpoint. It creates
its archive policies, meets resources it does not know (the batch's
"Unknown resources" answer), creates them with the attributes its
``gnocchi_resources.yaml`` maps, and pushes its samples as measures: they
must land on the right resources and metrics, readable through gnocchiclient
and the Ceilometer v2 API alike.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from ceilometer import sample as c_sample, service as c_service
from ceilometer.publisher import gnocchi as c_gnocchi

from tests.gnocchi_support import client


def _publisher(endpoint: str, tmp: Path) -> Any:
    conf_file = tmp / "ceilometer.conf"
    conf_file.write_text(f"""[service_credentials]
auth_type = gnocchi-noauth
user_id = ceilometer
project_id = service
roles = admin
endpoint = {endpoint}
""")
    conf = c_service.prepare_service([], [str(conf_file)])
    return c_gnocchi.GnocchiPublisher(conf, urlsplit("gnocchi://?enable_filter_project=false"))


def _sample(name: str, kind: str, unit: str, volume: float, rid: str, at: datetime, **meta: Any) -> c_sample.Sample:
    return c_sample.Sample(name=name, type=kind, unit=unit, volume=volume, user_id="u1", project_id="p1",
                           resource_id=rid, timestamp=at.isoformat(), resource_metadata=meta, source="openstack")


def test_ceilometer_gnocchi_publisher_lands_on_the_right_resources(daemon_factory: Any, tmp_path: Path) -> None:
    d = daemon_factory("run", config={"sources": {"host_metrics": {"enabled": False}}}).start()
    endpoint = d.url + "/gnocchi"
    pub = _publisher(endpoint, tmp_path)
    vm, vol = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)
    vm_meta = {"display_name": "web-1", "host": "compute-1", "image_ref": str(uuid.uuid4()),
               "flavor": {"id": "42", "name": "m1.small"}, "user_metadata": {"server_group": "stack-9"}}
    samples = [
        _sample("memory.usage", c_sample.TYPE_GAUGE, "MB", 512.0 + i, vm, t0 + timedelta(minutes=i), **vm_meta)
        for i in range(3)
    ] + [
        _sample("cpu", c_sample.TYPE_CUMULATIVE, "ns", 1e9 * i, vm, t0 + timedelta(minutes=5 * i), **vm_meta)
        for i in range(2)
    ] + [
        _sample("volume.size", c_sample.TYPE_GAUGE, "GB", 20.0, vol, t0, display_name="data", volume_type="ssd"),
        _sample("no.such.meter", c_sample.TYPE_GAUGE, "x", 1.0, vm, t0),  # not in gnocchi_resources.yaml: skipped
    ]
    pub.publish_samples(samples)

    g = client(endpoint)
    assert {"ceilometer-low", "ceilometer-low-rate", "ceilometer-high"} <= {p["name"] for p in g.archive_policy.list()}
    inst = g.resource.get("instance", vm)
    assert (inst["type"], inst["display_name"], inst["host"], inst["flavor_id"], inst["flavor_name"],
            inst["server_group"], inst["project_id"], inst["user_id"]) == (
        "instance", "web-1", "compute-1", "42", "m1.small", "stack-9", "p1", "u1")
    assert {"memory.usage", "cpu"} <= set(inst["metrics"])
    assert g.metric.get(inst["metrics"]["cpu"])["archive_policy"]["name"] == "ceilometer-low-rate"
    volume = g.resource.get("volume", vol)
    assert (volume["display_name"], volume["volume_type"]) == ("data", "ssd")

    # the measures, at the publisher's archive policy (5 minutes), mean and rate:mean
    mem = g.metric.get_measures("memory.usage", resource_id=vm)
    buckets: dict[float, list[float]] = {}
    for i in range(3):
        ts = (t0 + timedelta(minutes=i)).timestamp()
        buckets.setdefault(ts // 300 * 300, []).append(512.0 + i)
    assert [(t.timestamp(), gran, v) for t, gran, v in mem] == [
        (b, 300.0, sum(vs) / len(vs)) for b, vs in sorted(buckets.items())]
    rate = g.metric.get_measures("cpu", resource_id=vm, aggregation="rate:mean")
    assert [v for _, _, v in rate] == [1e9]
    assert [v for _, _, v in g.metric.get_measures("volume.size", resource_id=vol)] == [20.0]

    # the same measures are samples: the Ceilometer v2 API and alarms on the meter see them
    stored = httpx.get(f"{d.url}/v2/meters/memory.usage", params={"q.field": "resource_id", "q.value": vm}).json()
    assert sorted(s["counter_volume"] for s in stored) == [512.0, 513.0, 514.0]
    assert stored[0]["resource_metadata"]["server_group"] == "stack-9"

    # a second publication of the same samples changes nothing (ids derive from metric and time)
    pub.publish_samples(samples)
    assert g.metric.get_measures("memory.usage", resource_id=vm) == mem
