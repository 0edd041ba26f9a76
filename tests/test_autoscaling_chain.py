"""The textbook autoscaling chain, end to end through a running `telemetry run`.

A compute node's Ceilometer publishes cumulative ``cpu`` (ns) over its real
udp:// publisher; the pipeline stage turns it into ``cpu_util`` (%) with
``rate_of_change``; an alarm on ``cpu_util``, created with the real ``aodh``
CLI the way Heat's ``OS::Aodh::Alarm`` does, must fire its webhook within a
second of the breaching sample. Before the pipeline ran ahead of the fan-out,
the store kept ``cpu_util`` while the alarm on it stayed insufficient data.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from ceilometer import sample as c_sample
from ceilometer.publisher import udp as c_udp

from tests.actions_support import Receiver
from tests.support import aodh, ceilometer_conf, wait_for



def cpu(volume_ns: float, at: datetime.datetime) -> c_sample.Sample:
    return c_sample.Sample(
        name="cpu", type=c_sample.TYPE_CUMULATIVE, unit="ns", volume=volume_ns, user_id="u1", project_id="p1",
        resource_id="vm-autoscale-1", timestamp=at.isoformat(),
        resource_metadata={"cpu_number": 1, "user_metadata": {"server_group": "asg-1"}}, source="openstack",
    )


async def test_cumulative_cpu_from_the_udp_publisher_fires_a_cpu_util_alarm_within_a_second(
        daemon_factory, tmp_path: Path) -> None:
    hook = await Receiver().start()
    d = daemon_factory("run", config={
        "sources": {"ceilometer": {"enabled": True, "udp": "127.0.0.1:0"}, "host_metrics": {"enabled": False}},
        "actions": {"allowed_targets": ["127.0.0.0/8"]},
        "rules": {"tick": 0.2},
    })
    try:
        await asyncio.to_thread(d.start)
        host, _, port = d.listen("source.ceilometer_udp").removesuffix("/udp").rpartition(":")
        created = await asyncio.to_thread(
            aodh, d.url, "alarm", "create", "--name", "asg-cpu-high", "--type", "threshold", "-m", "cpu_util",
            "--threshold", "75", "--comparison-operator", "gt", "--aggregation-method", "avg", "--period", "60",
            "--evaluation-periods", "1", "--alarm-action", f"{hook.url}/scale-up", "-f", "json")
        assert created.returncode == 0, created.stderr + created.stdout
        alarm_id = json.loads(created.stdout)["alarm_id"]

        publisher = c_udp.UDPPublisher(ceilometer_conf(None), urlsplit(f"udp://{host}:{port}"))
        now = datetime.datetime.now(datetime.timezone.utc)
        publisher.publish_samples([cpu(0.0, now - datetime.timedelta(seconds=10))])
        await wait_for(lambda: httpx.get(f"{d.url}/v2/meters/cpu", timeout=5).json(), 10, "the first cpu sample")
        assert not hook.requests
        sent = time.time()
        publisher.publish_samples([cpu(9e9, now)])  # 9 s of CPU in 10 s on one vCPU: cpu_util 90 %
        [request] = await hook.wait(1, timeout=10)
        assert request["path"] == "/scale-up"
        assert request["at"] - sent < 1.0, f"webhook after {request['at'] - sent:.3f}s"
        body = request["json"]
        assert (body["alarm_id"], body["current"], body["previous"]) == (alarm_id, "alarm", "insufficient data")
        assert body["reason_data"]["most_recent"] == 90.0
        stored = httpx.get(f"{d.url}/v2/meters/cpu_util", timeout=5).json()
        assert [s["counter_volume"] for s in stored] == [90.0]
    finally:
        await hook.stop()
