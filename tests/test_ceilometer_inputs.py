"""Ceilometer's real publishers (PyPI ``ceilometer``) feeding our inputs.

The daemon runs in-process over the memory bus; we read what reached the
``samples`` topic with a consumer group of our own.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import socket
import uuid
from urllib.parse import urlsplit

import msgpack
import pytest
from ceilometer import sample as c_sample
from ceilometer.publisher import http as c_http
from ceilometer.publisher import udp as c_udp
from ceilometer.publisher import utils as c_utils

from telemetry.collect.ceilometer import HTTP_PATH, samples_from_notification
from telemetry.config import validate
from telemetry.daemon import Daemon
from telemetry.metrics import RECORDS_REJECTED
from telemetry.models import Sample, decode
from tests.conftest import free_port
from tests.support import ceilometer_conf

SECRET = "s3cret"


def c_samples(n: int, name: str = "cpu", volume0: float = 1e9) -> list[c_sample.Sample]:
    ts = datetime.datetime(2026, 3, 2, 10, 0, tzinfo=datetime.timezone.utc)
    return [
        c_sample.Sample(
            name=name, type=c_sample.TYPE_CUMULATIVE, unit="ns", volume=volume0 + i * 5e8,
            user_id="u1", project_id="p1", resource_id="vm-1",
            timestamp=(ts + datetime.timedelta(seconds=10 * i)).isoformat(),
            resource_metadata={"cpu_number": 2, "flavor": {"name": "m1.small"}, "tags": ["a", "b"]},
            source="openstack",
        )
        for i in range(n)
    ]


def rejected(stage: str, reason: str) -> float:
    return RECORDS_REJECTED.labels(stage=stage, reason=reason)._value.get()


@pytest.fixture
async def daemon(tmp_path):
    """A server-mode daemon over the memory bus, with its UDP input on a free port."""
    started: list[Daemon] = []

    async def start(secret: str | None = SECRET, tokens: list[str] | None = None):
        port = free_port(socket.SOCK_DGRAM)
        settings = validate({
            "data_dir": str(tmp_path / "data"),
            "api": {"port": 0, "tokens": tokens or []},
            "sources": {"ceilometer": {"udp": f"127.0.0.1:{port}", "telemetry_secret": secret}},
        })
        d = Daemon(settings, mode="server")
        rt = await d.start()
        started.append(d)
        consumer = await rt.bus.subscribe(["samples"], group=f"ingest-test-{uuid.uuid4().hex[:6]}")
        return rt, port, consumer

    yield start
    for d in started:
        await d.stop()


async def drain(consumer, want: int, timeout: float = 5.0) -> list[Sample]:
    out: list[Sample] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(out) < want and asyncio.get_running_loop().time() < deadline:
        ds = await consumer.fetch(100, timeout=0.2)
        out.extend(decode(Sample, d.value) for d in ds)
        await consumer.ack(ds)
    return out


async def test_real_udp_publisher_samples_arrive_verified(daemon):
    rt, port, consumer = await daemon()
    pub = c_udp.UDPPublisher(ceilometer_conf(SECRET), urlsplit(f"udp://127.0.0.1:{port}"))
    sent = c_samples(3)
    pub.publish_samples(sent)
    got = await drain(consumer, 3)
    assert sorted(s.message_id for s in got) == sorted(s.id for s in sent)
    first = next(s for s in got if s.message_id == sent[0].id)
    assert first.counter_name == "cpu" and first.counter_type.value == "cumulative"
    assert first.counter_volume == 1e9 and first.resource_metadata["flavor"]["name"] == "m1.small"
    assert first.timestamp == datetime.datetime(2026, 3, 2, 10, 0, tzinfo=datetime.timezone.utc)
    assert first.message_signature  # kept, as Ceilometer stores it


async def test_tampered_unsigned_and_garbage_datagrams_are_rejected_and_counted(daemon):
    rt, port, consumer = await daemon()
    stage = "source.ceilometer_udp"
    bad0, uns0, mal0 = rejected(stage, "bad_signature"), rejected(stage, "unsigned"), rejected(stage, "malformed")
    good, tampered = c_samples(2)
    msg = c_utils.meter_message_from_counter(tampered, SECRET)
    msg["counter_volume"] = 1.0  # edited in flight
    unsigned = c_utils.meter_message_from_counter(c_samples(1)[0], "")
    wrong_secret = c_udp.UDPPublisher(ceilometer_conf("other"), urlsplit(f"udp://127.0.0.1:{port}"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(msgpack.dumps(msg, use_bin_type=True), ("127.0.0.1", port))
        s.sendto(msgpack.dumps(unsigned, use_bin_type=True), ("127.0.0.1", port))
        s.sendto(b"\xc1 not msgpack", ("127.0.0.1", port))
        s.sendto(msgpack.dumps([1, 2, 3]), ("127.0.0.1", port))
    wrong_secret.publish_samples(c_samples(1, name="memory"))
    # The listener keeps going: a good sample after all that still arrives.
    c_udp.UDPPublisher(ceilometer_conf(SECRET), urlsplit(f"udp://127.0.0.1:{port}")).publish_samples([good])
    got = await drain(consumer, 1)
    await asyncio.sleep(0.2)
    got += await drain(consumer, 1, timeout=0.3)
    assert [s.message_id for s in got] == [good.id]
    assert rejected(stage, "bad_signature") - bad0 == 2
    assert rejected(stage, "unsigned") - uns0 == 1
    assert rejected(stage, "malformed") - mal0 == 2


async def test_without_secret_everything_well_formed_is_accepted(daemon):
    rt, port, consumer = await daemon(secret=None)
    c_udp.UDPPublisher(ceilometer_conf(None), urlsplit(f"udp://127.0.0.1:{port}")).publish_samples(c_samples(2))
    assert len(await drain(consumer, 2)) == 2


async def test_real_http_publisher_posts_to_our_route(daemon):
    rt, _, consumer = await daemon(secret=SECRET, tokens=["tok3n"])
    base = rt.api_address.replace("http://", "")
    conf = ceilometer_conf(SECRET)
    # Ceilometer's http:// publisher never signs (it posts Sample.as_dict());
    # the API token in its URL (sent as HTTP Basic auth) authenticates it.
    pub = c_http.HttpPublisher(conf, urlsplit(f"http://telemetry:tok3n@{base}{HTTP_PATH}?timeout=5&max_retries=0"))
    sent = c_samples(3, name="network.incoming.bytes")
    await asyncio.to_thread(pub.publish_samples, sent)
    got = await drain(consumer, 3)
    assert sorted(s.message_id for s in got) == sorted(s.id for s in sent)
    assert {s.counter_name for s in got} == {"network.incoming.bytes"}

    import httpx

    async with httpx.AsyncClient(base_url=rt.api_address) as client:
        # No token: refused outright.
        r = await client.post(HTTP_PATH, json=[])
        assert r.status_code == 401
        # Signed metering messages are verified even from an authenticated client.
        msgs = [c_utils.meter_message_from_counter(s, SECRET) for s in c_samples(2, name="memory")]
        bad = copy.deepcopy(msgs[1])
        bad["resource_id"] = "vm-2"
        r = await client.post(HTTP_PATH, json=[msgs[0], bad], headers={"Authorization": "Bearer tok3n"})
        assert r.status_code == 200 and r.json() == {"accepted": 1, "rejected": 1}
        r = await client.post(HTTP_PATH, content=b"{nope", headers={"Authorization": "Bearer tok3n"})
        assert r.status_code == 400
    got = await drain(consumer, 1)
    assert [s.message_id for s in got] == [msgs[0]["message_id"]]


async def test_http_without_tokens_needs_signatures_when_a_secret_is_set(daemon):
    rt, _, consumer = await daemon(secret=SECRET)
    import httpx

    signed = [c_utils.meter_message_from_counter(s, SECRET) for s in c_samples(2)]
    unsigned = c_samples(1)[0].as_dict()
    async with httpx.AsyncClient(base_url=rt.api_address) as client:
        r = await client.post(HTTP_PATH, json=signed + [unsigned])
    assert r.json() == {"accepted": 2, "rejected": 1}
    assert len(await drain(consumer, 2)) == 2


def test_polling_and_metering_notifications_become_samples():
    msgs = [c_utils.meter_message_from_counter(s, SECRET) for s in c_samples(3)]
    polling = {"event_type": "telemetry.polling", "priority": "SAMPLE", "publisher_id": "ceilometer.polling",
               "message_id": str(uuid.uuid4()), "payload": {"samples": msgs}}
    out = samples_from_notification(polling, SECRET)
    assert out.matched and out.rejected == 0
    assert [s.message_id for s in out.samples] == [m["message_id"] for m in msgs]

    tampered = copy.deepcopy(msgs)
    tampered[2]["counter_volume"] = 0
    metering = {"event_type": "metering", "priority": "SAMPLE", "payload": tampered}
    out = samples_from_notification(metering, SECRET)
    assert out.matched and len(out.samples) == 2 and out.rejected == 1

    # The oslo.messaging v2 envelope, and the per-meter topic form.
    import json

    envelope = {"oslo.version": "2.0", "oslo.message": json.dumps(dict(metering, event_type="metering.cpu", payload=msgs))}
    assert len(samples_from_notification(envelope, SECRET).samples) == 3

    other = samples_from_notification({"event_type": "compute.instance.create.end", "payload": {}}, SECRET)
    assert not other.matched and not other.samples
    broken = samples_from_notification({"event_type": "telemetry.polling", "payload": {"samples": "x"}}, SECRET)
    assert broken.matched and broken.rejected == 1


def test_udp_input_is_on_by_default_at_4952():
    s = validate({})
    assert s.sources.ceilometer.enabled and s.sources.ceilometer.udp == "127.0.0.1:4952"
    assert s.sources.ceilometer.http


def _nested(depth: int) -> dict:
    node: dict = {"leaf": 1}
    for _ in range(depth):
        node = {"n": node}
    return node


async def test_poison_datagrams_are_refused_and_the_next_sample_arrives_within_2s(daemon):
    """Issue 14's hostile datagrams: metadata nested 300 deep (signed or not), and a 990-deep list."""
    rt, port, consumer = await daemon(secret=None)
    stage = "source.ceilometer_udp"
    deep0, mal0 = rejected(stage, "too_complex"), rejected(stage, "malformed")
    poison = c_utils.meter_message_from_counter(c_samples(1, name="poison")[0], "")
    poison["resource_metadata"] = _nested(300)
    deep_list: list = []
    for _ in range(990):
        deep_list = [deep_list]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(msgpack.dumps(poison, use_bin_type=True), ("127.0.0.1", port))
        s.sendto(msgpack.dumps(deep_list), ("127.0.0.1", port))
    sent = asyncio.get_running_loop().time()
    c_udp.UDPPublisher(ceilometer_conf(None), urlsplit(f"udp://127.0.0.1:{port}")).publish_samples(c_samples(1))
    got = await drain(consumer, 1, timeout=2)
    assert [s.counter_name for s in got] == ["cpu"], "the good sample after the poison did not arrive"
    assert asyncio.get_running_loop().time() - sent < 2
    assert rejected(stage, "too_complex") - deep0 == 1
    assert rejected(stage, "malformed") - mal0 == 1

    import httpx

    async with httpx.AsyncClient(base_url=rt.api_address) as client:
        r = await client.post(HTTP_PATH, json=[poison, c_samples(1, name="memory")[0].as_dict()])
        assert r.status_code == 200, r.text  # not 503: a publisher must not resend a poison sample
        assert r.json() == {"accepted": 1, "rejected": 1}
        # every poison is listed among the dead letters with its reason; none can be replayed past its input
        want = {("refused:source.ceilometer_udp", "too_complex"), ("refused:source.ceilometer_udp", "malformed"),
                ("refused:source.ceilometer_http", "too_complex")}
        letters: list = []
        for _ in range(100):
            letters = (await client.get("/v1/dead-letters")).json()
            if want <= {(d["topic"], d["reason"]) for d in letters}:
                break
            await asyncio.sleep(0.05)
        assert want <= {(d["topic"], d["reason"]) for d in letters}, letters
        assert all("nested deeper" in d["error"] for d in letters if d["reason"] == "too_complex")
        replay = await client.post(f"/v1/dead-letters/{letters[0]['id']}/replay")
        assert replay.status_code == 409 and "refused at its input" in replay.text
