"""RabbitMQ-only behaviour: a broker restart mid-stream, malformed messages on the bus."""

from __future__ import annotations

import asyncio
import threading
import uuid
from types import SimpleNamespace

import pytest
from busenv import amqp_url, broker_outage  # noqa: F401 (fixture)

from telemetry.bus import Delivery, OutMessage, open_bus
from telemetry.bus.metrics import BUS_RECONNECTIONS
from telemetry.config.core import BusConfig
from telemetry.metrics import RECORDS_REJECTED
from telemetry.models import Record, Sample
from telemetry.stage import DEAD_LETTER_TOPIC, BusStage

pytestmark = pytest.mark.timeout(120)


def config(url: str) -> BusConfig:
    return BusConfig(url=url, topic_prefix=f"a{uuid.uuid4().hex[:6]}.", publish_timeout=40, reconnect_max_backoff=1)


async def test_broker_restart_mid_stream_loses_nothing(amqp_url: str) -> None:
    bus = open_bus(config(amqp_url))
    await bus.start()
    consumer = await bus.subscribe(["t"], "g")
    reconnects = BUS_RECONNECTIONS.labels(bus="amqp")._value.get()
    sent: list[bytes] = []
    got: set[bytes] = set()
    stop = asyncio.Event()
    done = asyncio.Event()  # the producer's last batch is confirmed

    async def produce() -> None:
        i = 0
        while not stop.is_set():
            batch = [OutMessage(value=f"m{i}-{j}".encode(), key=b"k") for j in range(20)]
            await bus.publish("t", batch)  # retries across the outage; returns only when confirmed
            sent.extend(m.value for m in batch)
            i += 1
            await asyncio.sleep(0.02)
        done.set()

    async def consume() -> None:
        while not (done.is_set() and set(sent) <= got):
            ds = await consumer.fetch(200, 0.5)
            got.update(d.value for d in ds)
            await consumer.ack(ds)

    tasks = [asyncio.ensure_future(produce()), asyncio.ensure_future(consume())]
    await asyncio.sleep(1.0)
    outage = threading.Thread(target=broker_outage, args=(2.0,))
    outage.start()  # rabbitmqctl blocks: run it beside the loop, like the broker's operator would
    while outage.is_alive():
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert len(sent) > 100
    assert set(sent) <= got, f"{len(set(sent) - got)} confirmed messages lost across the restart"
    assert BUS_RECONNECTIONS.labels(bus="amqp")._value.get() > reconnects
    await consumer.close()
    await bus.close()


class Collect(BusStage):
    name = "test.collect"
    topics = {"samples": Sample}
    group = "collect"

    def __init__(self, runtime: object) -> None:
        super().__init__(runtime)
        self.records: list[Record] = []

    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        self.records.extend(r for _, r in records)


async def test_malformed_messages_are_dead_lettered_and_counted(amqp_url: str) -> None:
    bus = open_bus(config(amqp_url))
    await bus.start()
    stage = Collect(SimpleNamespace(bus=bus))
    dead = await bus.subscribe([DEAD_LETTER_TOPIC], "audit")
    await stage.start()
    good = Sample(counter_name="cpu", counter_type="gauge", counter_volume=1, resource_id="r1")
    bad = [b"not json at all", b'{"counter_name": "cpu"}', b"{" + b'"x":"' + b"y" * 2_000_000 + b'"']
    await bus.publish("samples", [OutMessage(value=v) for v in bad[:2]]
                      + [OutMessage(value=good.to_json())] + [OutMessage(value=bad[2])])
    for _ in range(100):
        if stage.records and stage.rejected == 3:
            break
        await asyncio.sleep(0.1)
    assert [r.message_id for r in stage.records] == [good.message_id]  # the good one beside them went on
    assert stage.rejected == 3
    letters = []
    for _ in range(20):
        letters += await dead.fetch(10, 0.5)
        if len(letters) >= 3:
            break
    reasons = sorted(d.headers["reason"] for d in letters)
    # plain text is tried as msgpack (not "{"): ExtraData; the truncated huge JSON: JSONDecodeError
    assert reasons == ["invalid:counter_type", "undecodable:ExtraData", "undecodable:JSONDecodeError"]
    assert all(d.headers["topic"] == "samples" for d in letters)
    assert RECORDS_REJECTED.labels(stage="test.collect", reason="invalid:counter_type")._value.get() >= 1
    await dead.ack(letters)
    await stage.stop()
    await dead.close()
    await bus.close()


async def drain_all(consumer, n: int, ack: bool = True, rounds: int = 40) -> list[Delivery]:
    got: list[Delivery] = []
    for _ in range(rounds):
        if len(got) >= n:
            break
        ds = await consumer.fetch(n - len(got), 0.5)
        got += ds
        if ack and ds:
            await consumer.ack(ds)
    return got


async def test_log_records_travel_packed_and_come_out_one_by_one_in_key_order(amqp_url: str) -> None:
    """raw_logs and events: many records a message, delivered (and acked) as records, per-key order kept."""
    cfg = config(amqp_url)
    cfg.records_per_message = 30
    bus = open_bus(cfg)
    await bus.start()
    consumer = await bus.subscribe(["raw_logs"], "parse")
    msgs = [OutMessage(value=f"{k}-{i}".encode(), key=k.encode()) for i in range(100) for k in ("cn01", "cn02")]
    await bus.publish("raw_logs", msgs)
    got = await drain_all(consumer, 200)
    assert sorted(d.value for d in got) == sorted(m.value for m in msgs)
    for k in ("cn01", "cn02"):
        assert [d.value for d in got if d.key == k.encode()] == [f"{k}-{i}".encode() for i in range(100)]
    depth = await drain_all(consumer, 1, rounds=2)
    assert depth == []  # every pack acked: nothing comes again
    await consumer.close()
    await bus.close()


async def test_a_pack_is_acked_only_when_all_its_records_are(amqp_url: str) -> None:
    """Records given back, or never acked, bring their whole message back; at least once, never lost."""
    cfg = config(amqp_url)
    cfg.records_per_message = 10
    bus = open_bus(cfg)
    await bus.start()
    c = await bus.subscribe(["events"], "events")
    await bus.publish("events", [OutMessage(value=f"e{i}".encode(), key=b"cn01") for i in range(20)])
    first = await drain_all(c, 20, ack=False)
    assert len(first) == 20
    await c.ack(first[:10] + first[10:15])  # the first pack whole, half of the second
    await c.nack(first[15:16])  # one given back: its pack comes again whole, once the rest settles
    await c.ack(first[16:])
    again = await drain_all(c, 10)
    assert sorted(d.value for d in again) == sorted(d.value for d in first[10:]) and all(d.redelivered for d in again)
    await c.close()
    c2 = await bus.subscribe(["events"], "events")
    assert await drain_all(c2, 1, rounds=2) == []
    await c2.close()
    await bus.close()


async def test_a_broken_pack_is_dead_lettered_not_retried(amqp_url: str) -> None:
    cfg = config(amqp_url)
    bus = open_bus(cfg)
    await bus.start()
    c = await bus.subscribe(["raw_logs"], "parse")
    # marked as a pack but not one: what a broken (or foreign) publisher would send
    link = bus._publisher  # type: ignore[attr-defined]

    def publish_broken() -> None:
        channel = link.ensure(10**12)
        msg = channel.prepare_message(b"\xc1 not msgpack", headers={"x-telemetry-pack": "msgpack"},
                                      properties={"delivery_mode": 2})
        channel.basic_publish(msg, exchange=bus.exchange.name, routing_key=bus.topic("raw_logs"))  # type: ignore[attr-defined]

    await link.run(publish_broken)
    [d] = await drain_all(c, 1)
    assert d.value == b"\xc1 not msgpack" and not d.headers  # handed on whole: the stage dead-letters it
    await c.close()
    await bus.close()
