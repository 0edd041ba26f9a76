"""The OpenStack notification listener against the real oslo.messaging Notifier on the local RabbitMQ.

Each test gets its own queue prefix inside one private vhost (deleted after
the module), so the durable queues we and oslo declare never leak.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import kombu
import pytest
import yaml
from busenv import rabbit_vhost

from telemetry.bus import MemoryBus
from telemetry.collect.jsonpath import JsonPathError, compile_path
from telemetry.collect.meters import MeterMapping
from telemetry.collect.notifications import STAGE, NotificationConverter, NotificationListener, meter_files
from telemetry.collect.oslo_envelope import Malformed, document, unpack
from telemetry.config import Settings
from telemetry.metrics import RECORDS_REJECTED
from telemetry.models import Notification, Sample, decode
from telemetry.stage import DEAD_LETTER_TOPIC

pytestmark = pytest.mark.timeout(90)

#: Which exchange (the service's control_exchange) publishes each sample file.
EXCHANGE_OF = {"compute": "nova", "volume": "cinder", "port": "neutron", "orchestration": "heat"}


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    with rabbit_vhost("notif") as url:
        yield url


def oslo_url(amqp_url: str) -> str:
    return amqp_url.replace("amqp://", "rabbit://", 1)


def load_samples(folder: Path) -> list[dict[str, Any]]:
    """The sample notifications as oslo messages (the v2 envelopes unpacked)."""
    return [json.loads(json.loads(p.read_text())["oslo.message"]) for p in sorted(folder.glob("*.json"))]


def oslo_publish(amqp_url: str, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish (exchange, oslo message) pairs with the real oslo.messaging Notifier, in a subprocess."""
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "oslo_publish.py"), oslo_url(amqp_url)],
                         input=json.dumps(messages), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [m["event_type"] for _, m in messages]


def raw_publish(amqp_url: str, exchange: str, routing_key: str, bodies: list[bytes]) -> None:
    """Publish bodies as they are (v1 plain form, garbage) on an oslo exchange."""
    with kombu.Connection(amqp_url) as conn:
        ch = conn.channel()
        for body in bodies:
            ch.basic_publish(ch.prepare_message(body, content_type="application/json"),
                             exchange=exchange, routing_key=routing_key)
        ch.close()


def settings(tmp_path: Path, url: str, **notif: Any) -> Settings:
    return Settings(data_dir=tmp_path, sources={
        "files": [], "host_metrics": {"enabled": False}, "ceilometer": {"enabled": False},
        "notifications": {"enabled": True, "url": url, "queue_prefix": f"notif-{uuid.uuid4().hex[:6]}-", **notif},
    })


class Harness:
    """The listener in-process over a MemoryBus, with a consumer on everything it publishes."""

    def __init__(self, tmp_path: Path, url: str, **notif: Any) -> None:
        self.bus = MemoryBus()
        self.runtime = SimpleNamespace(settings=settings(tmp_path, url, **notif), bus=self.bus, services={})
        self.listener = NotificationListener(self.runtime)
        self.got: dict[str, list[Any]] = {"notifications": [], "samples": [], DEAD_LETTER_TOPIC: []}

    async def __aenter__(self) -> Harness:
        self.consumer = await self.bus.subscribe(list(self.got), "test")
        await self.listener.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.listener.stop()
        await self.consumer.close()

    async def wait(self, notifications: int, samples: int = 0, dead: int = 0, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = [len(self.got[t]) for t in ("notifications", "samples", DEAD_LETTER_TOPIC)]
            if counts[0] >= notifications and counts[1] >= samples and counts[2] >= dead:
                return
            for d in await self.consumer.fetch(500, 0.2):
                if d.topic == "notifications":
                    self.got[d.topic].append(decode(Notification, d.value))
                elif d.topic == "samples":
                    self.got[d.topic].append(decode(Sample, d.value))
                else:
                    self.got[d.topic].append(d)
                await self.consumer.ack([d])
        raise AssertionError(f"timed out: {[(t, len(v)) for t, v in self.got.items()]}")

    def samples(self, name: str) -> list[Sample]:
        return [s for s in self.got["samples"] if s.counter_name == name]


def drain_queue(amqp_url: str, queue: str) -> list[dict[str, Any]]:
    """Everything waiting in ``queue`` (oslo's own), as oslo messages."""
    out = []
    with kombu.Connection(amqp_url) as conn:
        ch = conn.channel()
        while (m := ch.basic_get(queue=queue, no_ack=True)) is not None:
            out.append(json.loads(json.loads(m.body)["oslo.message"]))
        ch.close()
    return out


def queue_depth(amqp_url: str, queue: str) -> int:
    with kombu.Connection(amqp_url) as conn:
        ch = conn.channel()
        _, ready, _ = ch.queue_declare(queue=queue, passive=True)
        ch.close()
    return ready


async def test_oslo_notifier_to_records_and_samples_without_stealing(tmp_path, vhost, samples_dir) -> None:
    msgs = load_samples(samples_dir / "notifications")
    extra = [
        {"event_type": "image.upload", "priority": "INFO", "publisher_id": "image.ctl01",
         "payload": {"id": "img-1", "owner": "p1", "size": 13287936, "name": "cirros", "status": "active"}},
        {"event_type": "floatingip.create.end", "priority": "INFO", "publisher_id": "network.ctl01",
         "payload": {"floatingip": {"id": "fip-1", "tenant_id": "p1", "status": "DOWN"}}},
        {"event_type": "router.create.end", "priority": "INFO", "publisher_id": "network.ctl01",
         "payload": {"router": {"id": "r-1", "tenant_id": "p1", "name": "r"}}},
    ]
    # Ceilometer's own polling agent: samples ride in a notification on its exchange.
    polling = {"event_type": "telemetry.polling", "priority": "SAMPLE", "publisher_id": "ceilometer.polling",
               "payload": {"samples": [
                   {"counter_name": "cpu", "counter_type": "cumulative", "counter_unit": "ns",
                    "counter_volume": 1e9 * i, "resource_id": "vm-9", "user_id": "u", "project_id": "p",
                    "timestamp": f"2026-03-02T10:00:0{i}Z", "message_id": f"poll-{i}", "source": "openstack",
                    "resource_metadata": {}} for i in range(2)]}}
    plan = [(EXCHANGE_OF[m["event_type"].split(".")[0]], m) for m in msgs]
    plan += [("glance", extra[0]), ("neutron", extra[1]), ("neutron", extra[2]), ("ceilometer", polling)]

    async with Harness(tmp_path, vhost) as h:
        await asyncio.to_thread(oslo_publish, vhost, plan)
        await h.wait(notifications=len(msgs) + 3, samples=17)

    got = {n.event_type: n for n in h.got["notifications"]}
    assert set(got) == {m["event_type"] for m in msgs + extra}
    create = got["compute.instance.create.end"]
    assert create.publisher_id == "compute.cn01" and create.priority == "INFO"
    assert create.payload["memory_mb"] == 2048
    assert create.model_extra["_context_request_id"] == "req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11"
    assert got["compute.instance.create.error"].priority == "ERROR"

    vm = "3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21"
    mem = [s for s in h.samples("memory") if s.resource_metadata["state"] == "active"][0]
    assert (mem.counter_volume, mem.counter_unit, mem.counter_type.value, mem.resource_id) == (2048, "MiB", "gauge", vm)
    assert mem.project_id == "9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d" and mem.user_id == "6f1c0a3b2e8d4d7c9b1a2f3e4d5c6b7a"
    assert mem.resource_metadata["user_metadata"] == {"server_group": "stack-abc123"}  # what Heat scaling queries
    assert mem.resource_metadata["flavor_name"] == "m1.small"
    expected = {
        "instance": (1, "instance", vm), "vcpus": (1, "vcpu", vm), "disk.root.size": (20, "GiB", vm),
        "disk.ephemeral.size": (0, "GiB", vm), "volume.size": (10, "GiB", "7e6d5c4b-3a29-4180-9f8e-7d6c5b4a3928"),
        "port": (1, "port", "a1b2c3d4-e5f6-4071-8293-a4b5c6d7e8f9"), "image.size": (13287936, "B", "img-1"),
        "ip.floating": (1, "ip", "fip-1"), "router.create": (1, "router", "r-1"), "cpu": (1e9, "ns", "vm-9"),
    }
    for name, (volume, unit, rid) in expected.items():
        found = [(s.counter_volume, s.counter_unit, s.resource_id) for s in h.samples(name)]
        assert (volume, unit, rid) in found, (name, found)
    assert len(h.samples("instance")) == 3  # create.end, create.error, delete.end
    assert [s.message_id for s in h.samples("cpu")] == ["poll-0", "poll-1"]  # Ceilometer's own ids kept
    assert len({s.message_id for s in h.got["samples"]}) == len(h.got["samples"])
    assert not h.got[DEAD_LETTER_TOPIC]

    # OpenStack's own queues (oslo declares them; Ceilometer's agent reads them) still got everything.
    theirs = drain_queue(vhost, "notifications.info") + drain_queue(vhost, "notifications.error") \
        + drain_queue(vhost, "notifications.sample")
    assert sorted(m["event_type"] for m in theirs) == sorted(m["event_type"] for _, m in plan)
    ours = {n.message_id for n in h.got["notifications"]}
    assert {m["message_id"] for m in theirs if m["event_type"] != "telemetry.polling"} == ours


async def test_v1_form_and_malformed_messages_beside_good_ones(tmp_path, vhost) -> None:
    v1 = {"message_id": str(uuid.uuid4()), "event_type": "volume.create.end", "priority": "INFO",
          "publisher_id": "volume.st01", "timestamp": "2026-03-02 09:40:00.560000",
          "payload": {"volume_id": "vol-v1", "tenant_id": "p1", "user_id": "u1", "size": 5},
          "_context_request_id": "req-v1", "_context_user_id": "u1"}
    v2 = {"oslo.version": "2.0", "oslo.message": json.dumps(dict(v1, message_id=str(uuid.uuid4()),
                                                                payload=dict(v1["payload"], volume_id="vol-v2")))}
    bad = {
        b"{not json": "not_json",
        json.dumps({"oslo.version": "1.0", "oslo.message": "{}"}).encode(): "bad_envelope",
        json.dumps({"oslo.version": "2.0", "oslo.message": {"event_type": "x"}}).encode(): "bad_envelope",
        json.dumps(dict(v1, payload={"blob": "x" * 70_000})).encode(): "too_large",
        json.dumps({"event_type": "x.y", "payload": {}}).encode(): "missing:message_id",
    }
    before = {r: RECORDS_REJECTED.labels(stage=STAGE, reason=r)._value.get() for r in set(bad.values())}
    async with Harness(tmp_path, vhost, max_message_bytes=65536) as h:
        bodies = [json.dumps(v1).encode(), *bad, json.dumps(v2).encode()]
        await asyncio.to_thread(raw_publish, vhost, "cinder", "notifications.info", bodies)
        await h.wait(notifications=2, samples=2, dead=len(bad))
        queue = f"{h.runtime.settings.sources.notifications.queue_prefix}notifications.info"
        await asyncio.sleep(0.3)
        assert queue_depth(vhost, queue) == 0  # the bad ones were acked too: they never loop

    assert {n.payload["volume_id"] for n in h.got["notifications"]} == {"vol-v1", "vol-v2"}
    n1 = next(n for n in h.got["notifications"] if n.payload["volume_id"] == "vol-v1")
    assert n1.message_id == v1["message_id"] and n1.model_extra["_context_request_id"] == "req-v1"
    assert sorted(s.resource_id for s in h.samples("volume.size")) == ["vol-v1", "vol-v2"]
    dead = {d.value: d.headers for d in h.got[DEAD_LETTER_TOPIC]}
    assert {body: headers["reason"] for body, headers in dead.items()} == bad
    assert all(headers["stage"] == STAGE and headers["topic"] == "cinder/notifications.info" for headers in dead.values())
    for reason in set(bad.values()):
        n = sum(1 for r in bad.values() if r == reason)
        assert RECORDS_REJECTED.labels(stage=STAGE, reason=reason)._value.get() == before[reason] + n


def test_redelivered_notification_gives_the_same_sample_ids(samples_dir) -> None:
    conv = NotificationConverter(MeterMapping.load(meter_files(None)), None, 1 << 20)
    body = (samples_dir / "notifications" / "compute.instance.create.end.json").read_bytes()
    first, again = conv.convert(body), conv.convert(body)
    assert [r.to_dict() for r in first] == [r.to_dict() for r in again]
    ids = [r.message_id for r in first if isinstance(r, Sample)]
    assert len(ids) == 5 and len(set(ids)) == 5
    with pytest.raises(Malformed) as exc:
        conv.convert(json.dumps({"message_id": "m", "event_type": "x", "payload": [1]}).encode())
    assert exc.value.reason == "bad_payload"


def test_shipped_meters_load_and_paths_agree_with_jsonpath_rw_ext(samples_dir) -> None:
    """Every JSONPath of collectors/meters.yaml gives what Ceilometer's own evaluator gives."""
    from jsonpath_rw_ext import parser

    mapping = MeterMapping.load(meter_files(None))
    assert not mapping.errors
    names = {d.name for d in mapping.definitions}
    assert {"instance", "vcpus", "memory", "disk.root.size", "disk.ephemeral.size", "volume.size", "image.size",
            "ip.floating", "bandwidth", "port", "router.create", "network.create"} <= names
    data = yaml.safe_load(meter_files(None)[0].read_text())
    paths = set()
    for d in data["metric"]:
        for v in [d.get(k) for k in ("volume", "resource_id", "project_id", "user_id", "user_metadata")] + \
                list((d.get("metadata") or {}).values()):
            if isinstance(v, str) and v.startswith("$"):
                paths.add(v)
    docs = [document(unpack(p.read_bytes(), 1 << 20)) for p in sorted((samples_dir / "notifications").glob("*.json"))]
    docs.append({"payload": {"glance_metadata": [{"key": "image_id", "value": "I"}],
                             "volume_attachment": [{"server_id": "S"}], "port": {"project_id": "P"}}})
    ext = parser.ExtentedJsonPathParser()
    checked = 0
    for text in sorted(paths):
        theirs = ext.parse(text)
        for doc in docs:
            assert compile_path(text).find(doc) == [m.value for m in theirs.find(doc)], (text, doc["payload"])
            checked += 1
    assert checked > 100
    for beyond_the_subset in ("$.payload..id", "$.payload.a * 100", "$.payload.`split(#, 0, 1)`", "payload.a",
                              "$.payload.a | $.payload.b"):  # Ceilometer's dialect, through jsonpath-rw-ext
        doc = {"payload": {"a": 3, "b": 4, "c": {"id": "x.y"}, "id": "a.b"}}
        assert compile_path(beyond_the_subset).find(doc) == [m.value for m in ext.parse(beyond_the_subset).find(doc)]
    for neither in ("$.payload.[", "$.payload.a +", "$$$"):
        with pytest.raises(JsonPathError):
            compile_path(neither)
    broken = MeterMapping.from_data({"metric": [{"name": "x", "type": "bogus", "event_type": "a", "unit": "u",
                                                 "volume": 1, "resource_id": "$.a"}, {"name": "y"}]})
    assert not broken.definitions and len(broken.errors) == 2 and "type must be" in broken.errors[0]


def test_daemon_stores_notifications_and_their_samples(daemon_factory, vhost, samples_dir) -> None:
    d = daemon_factory("run", {"sources": {"notifications": {
        "enabled": True, "url": vhost, "queue_prefix": f"notif-{uuid.uuid4().hex[:6]}-"}}})
    d.start()
    health = d.wait_healthy()
    assert health["components"][STAGE]["state"] == "running", health
    msg = load_samples(samples_dir / "notifications")[0]
    assert msg["event_type"] == "compute.instance.create.end"
    oslo_publish(vhost, [("nova", msg)])
    deadline = time.monotonic() + 20
    events, memory = [], []
    while time.monotonic() < deadline and not (events and memory):
        events = httpx.get(d.url + "/v1/events", params={"q": "event_type:compute.instance.create.end"}).json()
        memory = httpx.get(d.url + "/v2/samples", params={"q.field": "meter", "q.value": "memory"}).json()
        time.sleep(0.3)
    assert len(events) == 1, d.output()
    ev = events[0]
    assert ev["type"] == "notification" and ev["component"] == "nova" and ev["host"] == "cn01"
    assert ev["request_id"] == "req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11"
    assert ev["instance_id"] == "3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21"
    assert [(s["volume"], s["unit"], s["resource_id"]) for s in memory] == \
        [(2048, "MiB", "3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21")]
    vcpus = httpx.get(d.url + "/v2/meters/vcpus").json()
    assert [s["counter_volume"] for s in vcpus] == [1]
    d.stop()


class FlakyBus(MemoryBus):
    """A real MemoryBus that refuses publishes while ``down`` (our central bus in an outage)."""

    down = False

    async def publish(self, topic, messages):  # type: ignore[no-untyped-def]
        if self.down:
            from telemetry.bus import BusError

            raise BusError("bus down (test)")
        return await super().publish(topic, messages)


async def test_acked_on_the_cloud_broker_only_after_our_bus_took_it(tmp_path, vhost, samples_dir) -> None:
    msg = load_samples(samples_dir / "notifications")[0]
    async with Harness(tmp_path, vhost) as h:
        queue = f"{h.runtime.settings.sources.notifications.queue_prefix}notifications.info"
        h.bus.__class__ = FlakyBus
        h.bus.down = True
        await asyncio.to_thread(oslo_publish, vhost, [("nova", msg)])
        await asyncio.sleep(1.5)  # the listener holds it, retrying our bus
        assert not await h.consumer.fetch(10, 0.1)
    # The listener stopped without our bus ever taking the message: the cloud broker has it back.
    assert queue_depth(vhost, queue) == 1
    async with Harness(tmp_path, vhost, queue_prefix=h.runtime.settings.sources.notifications.queue_prefix) as again:
        await again.wait(notifications=1, samples=5)
    assert again.got["notifications"][0].event_type == msg["event_type"]
    assert queue_depth(vhost, queue) == 0
