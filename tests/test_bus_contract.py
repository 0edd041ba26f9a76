"""The Bus/Consumer contract, run against every bus: memory, RabbitMQ and Kafka.

MemoryBus is the reference; RabbitMQ is the machine's broker (a private
vhost), Kafka is librdkafka's mock cluster over real TCP.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from busenv import MockKafka, amqp_url, kafka  # noqa: F401 (fixtures)

from telemetry.bus import Bus, Consumer, Delivery, MemoryBus, OutMessage, open_bus
from telemetry.config.core import BusConfig, KafkaOptions

pytestmark = pytest.mark.timeout(120)


def bus_config(url: str) -> BusConfig:
    return BusConfig(
        url=url, topic_prefix=f"c{uuid.uuid4().hex[:6]}.", prefetch=100, publish_timeout=20,
        kafka=KafkaOptions(session_timeout=6, heartbeat_interval=0.5, linger_ms=1),
    )


@pytest.fixture(params=["memory", "amqp", "kafka"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    kind = request.param
    if kind == "memory":
        b: Bus = MemoryBus(topic_prefix="c.")
    elif kind == "amqp":
        b = open_bus(bus_config(request.getfixturevalue("amqp_url")))
    else:
        b = open_bus(bus_config(request.getfixturevalue("kafka").url))
    await b.start()
    b.kind = kind  # type: ignore[attr-defined]
    yield b
    await b.close()


def msgs(n: int, keys: int = 4, start: int = 0) -> list[OutMessage]:
    return [OutMessage(value=f"m{i}".encode(), key=f"k{i % keys}".encode(), headers={"n": str(i)})
            for i in range(start, start + n)]


async def drain(c: Consumer, want: int, ack: bool = True, per_fetch: int = 500, quiet: float = 10.0) -> list[Delivery]:
    """Fetch until ``want`` deliveries came (or nothing came for ``quiet`` s)."""
    out: list[Delivery] = []
    idle = 0.0
    while len(out) < want and idle < quiet:
        got = await c.fetch(per_fetch, 0.5)
        if not got:
            idle += 0.5
            continue
        idle = 0.0
        out.extend(got)
        if ack:
            await c.ack(got)
    return out


async def ready(c: Consumer) -> Consumer:
    """Kafka joins its group in the background: wait until it owns partitions, so a
    "nothing more came" check means something."""
    if hasattr(c, "_joined"):
        assert await c._joined(30)
        for _ in range(100):
            if c._c.assignment():  # type: ignore[attr-defined]
                break
            await c.fetch(1, 0.1)
    return c


def values(ds: list[Delivery]) -> list[bytes]:
    return [d.value for d in ds]


async def test_publish_fetch_ack(bus: Bus) -> None:
    c = await bus.subscribe(["t"], "g")
    await bus.publish("t", msgs(50))
    got = await drain(c, 50)
    assert sorted(values(got)) == sorted(m.value for m in msgs(50))
    d = got[0]
    assert d.topic == "t" and d.key is not None and d.headers["n"] == d.value.decode()[1:]
    await c.close()
    again = await ready(await bus.subscribe(["t"], "g"))
    assert await drain(again, 1, quiet=2.0) == []  # acked: never delivered again
    await again.close()


async def test_published_before_any_subscriber_is_kept(bus: Bus) -> None:
    await bus.publish("early", msgs(20))
    c = await bus.subscribe(["early"], "g")
    assert sorted(values(await drain(c, 20))) == sorted(m.value for m in msgs(20))
    await c.close()


async def test_unacked_redelivered_after_close(bus: Bus) -> None:
    c = await bus.subscribe(["t"], "g")
    await bus.publish("t", msgs(30))
    first = await drain(c, 30, ack=False)
    assert len(first) == 30
    await c.ack(first[:10] if bus.kind != "kafka" else [])  # type: ignore[attr-defined]
    await c.close()
    c2 = await bus.subscribe(["t"], "g")
    again = await drain(c2, 30 if bus.kind == "kafka" else 20)  # type: ignore[attr-defined]
    want = {m.value for m in msgs(30)} - ({d.value for d in first[:10]} if bus.kind != "kafka" else set())  # type: ignore[attr-defined]
    assert {d.value for d in again} == want
    if bus.kind != "kafka":  # type: ignore[attr-defined]
        # Kafka cannot know a record was read before by a consumer that left.
        assert all(d.redelivered for d in again)
    await c2.close()


async def test_kafka_commits_only_contiguous_acks(bus: Bus) -> None:
    """Acking a later record must not commit past an earlier one still in flight."""
    c = await bus.subscribe(["t"], "g")
    await bus.publish("t", [OutMessage(value=f"m{i}".encode(), key=b"one") for i in range(10)])
    got = await drain(c, 10, ack=False)
    assert values(got) == [f"m{i}".encode() for i in range(10)]
    await c.ack(got[5:])  # 0..4 still in flight
    await c.close()
    c2 = await ready(await bus.subscribe(["t"], "g"))
    again = await drain(c2, 10, quiet=3.0)
    if bus.kind == "kafka":  # type: ignore[attr-defined]
        assert values(again) == [f"m{i}".encode() for i in range(10)]  # committed nothing: 0 was never acked
    else:
        assert values(again) == [f"m{i}".encode() for i in range(5)]
    await c2.close()


async def test_kafka_consumer_waits_as_configured(kafka: MockKafka) -> None:
    """``bus.kafka.fetch_max_wait`` reaches aiokafka: the mock cluster holds a fetch that finds nothing
    for the whole wait, so a record published after the consumer caught up came 0.5 s late by default."""
    cfg = bus_config(kafka.url)
    cfg.kafka.fetch_max_wait = 0.05
    b = open_bus(cfg)
    await b.start()
    try:
        c = await ready(await b.subscribe(["t"], "g"))
        assert c._c._fetch_max_wait_ms == 50  # type: ignore[attr-defined]
        late = []
        for i in range(3):
            await c.fetch(10, 0.2)  # caught up: the next fetch finds nothing at first
            t0 = asyncio.get_running_loop().time()
            await b.publish("t", [OutMessage(value=f"m{i}".encode(), key=b"k")])
            got = await drain(c, 1, quiet=5.0)
            late.append(asyncio.get_running_loop().time() - t0)
            assert values(got) == [f"m{i}".encode()]
        assert sorted(late)[1] < 0.2, late
        await c.close()
    finally:
        await b.close()


async def test_kafka_batches_several_large_messages_together(kafka: MockKafka) -> None:
    """``bus.kafka.batch_bytes`` reaches the producer: messages of tens of KiB (a packed message of the log
    topics) published together go in one batch, and a consumer gets them in one fetch; with the client's
    16 KiB default each had a batch of its own and came in a fetch of its own."""
    b = open_bus(bus_config(kafka.url))
    await b.start()
    try:
        c = await ready(await b.subscribe(["t"], "g"))
        await c.fetch(10, 0.2)
        big = [OutMessage(value=bytes([65 + i]) * 40_000, key=b"k") for i in range(5)]
        await b.publish("t", big)
        first: list[Delivery] = []
        while not first:
            first = await c.fetch(100, 2.0)
        assert [d.value for d in first] == [m.value for m in big]
        await c.ack(first)
        await c.close()
    finally:
        await b.close()


@pytest.mark.parametrize("codec", ["none", "gzip"])
async def test_kafka_consumers_read_batches_of_another_codec(kafka: MockKafka, codec: str) -> None:
    """zstd by default; a producer configured otherwise (an agent set up apart, or for a broker older than
    Kafka 2.1) is still read."""
    assert KafkaOptions().compression == "zstd"
    cfg = bus_config(kafka.url)
    ours = open_bus(cfg)
    other_cfg = cfg.model_copy(deep=True)
    other_cfg.kafka.compression = codec  # type: ignore[assignment]
    other = open_bus(other_cfg)
    await ours.start()
    await other.start()
    try:
        c = await ready(await ours.subscribe(["t"], "g"))
        await other.publish("t", msgs(5))
        await ours.publish("t", msgs(5, start=5))
        got = await drain(c, 10)
        assert sorted(values(got)) == sorted(m.value for m in msgs(10))
        await c.close()
    finally:
        await other.close()
        await ours.close()


async def test_kafka_batches_enqueued_together_stay_whole_and_in_order(kafka: MockKafka) -> None:
    """``enqueue`` returns before the broker's acks, so the agent has several batches under way: each key's
    records still arrive in the order their batches were enqueued, also when sends wait for room in the
    producer's queue (16 KiB batches here, filled by large records, with small ones waiting behind)."""
    cfg = bus_config(kafka.url)
    cfg.kafka.batch_bytes = 16 * 1024
    cfg.records_per_message = 1
    b = open_bus(cfg)
    await b.start()
    try:
        c = await ready(await b.subscribe(["t"], "g"))
        # Large records, then small ones that would fit where the next large one did not.
        batches = [[OutMessage(value=f"{n}-{i}-".encode() + b"x" * (3000 if n % 2 == 0 else 10), key=b"node1")
                    for i in range(12)] for n in range(5)]
        receipts = await asyncio.gather(*(b.enqueue("t", batch) for batch in batches))
        for r in receipts:
            await r
        got = await drain(c, 60, quiet=5.0)
        assert [d.value.split(b"-x")[0] for d in got] == [m.value.split(b"-x")[0] for bt in batches for m in bt]
        await c.close()
    finally:
        await b.close()


async def test_kafka_records_deleted_before_a_group_read_them_are_counted(kafka: MockKafka,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Retention shorter than a group's lag: the broker deletes records the group has not read, and the
    client goes on from the oldest kept. Not silent: a warning names the offsets, a counter counts them.
    The mock cluster keeps only a partition's newest few MiB: 20 MB published behind a consumer does it."""
    import os

    from telemetry.bus.metrics import BUS_OFFSETS_SKIPPED

    cfg = bus_config(kafka.url)
    cfg.kafka.compression = "none"
    cfg.records_per_message = 1
    b = open_bus(cfg)
    await b.start()
    try:
        c = await ready(await b.subscribe(["t"], "g"))
        await b.publish("t", [OutMessage(value=b"first", key=b"k")])
        got: list[Delivery] = []
        while not got:
            got = await c.fetch(1, 1.0)
        await c.ack(got)
        counter = BUS_OFFSETS_SKIPPED.labels(topic="t", group="g")
        before = counter._value.get()
        for _ in range(40):
            await b.publish("t", [OutMessage(value=os.urandom(50_000), key=b"k") for _ in range(10)])
        later = await drain(c, 400, per_fetch=100, quiet=4.0)
        offsets = [d.token[1] for d in got + later]
        assert offsets[0] == 0 and offsets[-1] == 400 and len(offsets) < 401  # the mock dropped the oldest
        skipped = counter._value.get() - before
        assert skipped == 401 - len(offsets) > 0
        assert any("were gone from the broker before this group read them" in r.message for r in caplog.records)
        await c.close()
    finally:
        await b.close()


async def test_kafka_records_without_a_value_come_as_empty_bytes(kafka: MockKafka) -> None:
    """A record with no value (a tombstone) or a header with none, as any client with access to the topic
    may produce: handed on as empty bytes, for the stage to dead-letter with its reason, and the records
    after it still come (before, the compiled ``Delivery`` refused None and the fetch failed each time)."""
    import confluent_kafka

    b = open_bus(bus_config(kafka.url))
    await b.start()
    try:
        c = await ready(await b.subscribe(["t"], "g"))
        await b.publish("t", [OutMessage(value=b"first", key=b"k")])
        other = confluent_kafka.Producer({"bootstrap.servers": kafka.bootstrap})
        other.produce(b.topic("t"), value=None, key=b"k")
        other.produce(b.topic("t"), value=b"after", key=b"k", headers=[("x-empty", None)])
        other.flush(10)
        got = await drain(c, 3, ack=False)
        assert [d.value for d in got] == [b"first", b"", b"after"]
        assert got[2].headers == {"x-empty": ""}
        await c.ack(got)
        await c.close()
    finally:
        await b.close()


async def test_nack_requeue(bus: Bus) -> None:
    c = await bus.subscribe(["t"], "g")
    await bus.publish("t", [OutMessage(value=f"m{i}".encode(), key=b"one") for i in range(5)])
    got = await drain(c, 5, ack=False)
    await c.nack(got)
    again = await drain(c, 5)
    assert values(again) == values(got)
    assert all(d.redelivered for d in again)
    await c.nack(again, requeue=False)  # already acked: a no-op
    await c.close()


async def test_groups_fan_out(bus: Bus) -> None:
    a = await bus.subscribe(["t"], "ga")
    b = await bus.subscribe(["t"], "gb")
    await bus.publish("t", msgs(40))
    want = sorted(m.value for m in msgs(40))
    assert sorted(values(await drain(a, 40))) == want
    assert sorted(values(await drain(b, 40))) == want
    await a.close()
    await b.close()


async def settle_group(bus: Bus, consumers: list[Consumer]) -> None:
    """Kafka: wait until the group has spread its partitions over every member."""
    if bus.kind != "kafka":  # type: ignore[attr-defined]
        return
    for _ in range(100):
        await asyncio.gather(*(c.fetch(10, 0.1) for c in consumers))
        if all(c._c.assignment() for c in consumers):  # type: ignore[attr-defined]
            return
    raise AssertionError("the Kafka group never gave every member a partition")


async def test_competing_consumers(bus: Bus) -> None:
    await bus.publish("t", msgs(1, keys=1))  # creates the topic (Kafka auto-creates 4 partitions)
    a = await bus.subscribe(["t"], "g")
    b = await bus.subscribe(["t"], "g")
    await settle_group(bus, [a, b])
    await drain(a, 1, quiet=1.0)
    await drain(b, 1, quiet=1.0)
    await bus.publish("t", msgs(200, keys=16, start=1))
    got: dict[int, list[Delivery]] = defaultdict(list)
    idle = 0
    while sum(map(len, got.values())) < 200 and idle < 20:
        progress = False
        for i, c in enumerate((a, b)):
            ds = await c.fetch(10, 0.2)
            if ds:
                got[i].extend(ds)
                await c.ack(ds)
                progress = True
        idle = 0 if progress else idle + 1
    all_values = values(got[0]) + values(got[1])
    assert sorted(all_values) == sorted(m.value for m in msgs(200, keys=16, start=1))  # no loss, no duplicate
    assert got[0] and got[1], "both members of the group got work"
    await a.close()
    await b.close()


async def test_enqueued_batches_arrive_in_order_once_their_receipts_complete(bus: Bus) -> None:
    """``enqueue`` (the agent's shipper): several batches under way at once, each receipt completes, and
    a consumer gets every record, each key's in the order the batches were enqueued."""
    c = await ready(await bus.subscribe(["t"], "g", writes_durably=False))
    receipts = [await bus.enqueue("t", msgs(40, keys=3, start=start)) for start in range(0, 200, 40)]
    for r in receipts:
        await r
    got = await drain(c, 200, per_fetch=64)
    assert sorted(values(got)) == sorted(m.value for m in msgs(200))
    seen: dict[bytes | None, list[int]] = defaultdict(list)
    for d in got:
        seen[d.key].append(int(d.value[1:]))
    for key, seq in seen.items():
        assert seq == sorted(seq), f"order broken for key {key!r}"
    await c.close()


async def test_per_key_order(bus: Bus) -> None:
    c = await bus.subscribe(["t"], "g")
    for start in range(0, 300, 50):  # several batches, interleaved keys
        await bus.publish("t", msgs(50, keys=5, start=start))
    got = await drain(c, 300, per_fetch=37)
    seen: dict[bytes | None, list[int]] = defaultdict(list)
    for d in got:
        seen[d.key].append(int(d.value[1:]))
    assert len(got) == 300
    for key, seq in seen.items():
        assert seq == sorted(seq), f"order broken for key {key!r}"
    await c.close()


async def test_log_topics_deliver_each_record_in_key_order(bus: Bus) -> None:
    """raw_logs and events travel packed on the brokers (bus.records_per_message): consumers still
    get one delivery a record, each key's records in order, and once all are acked nothing again."""
    c = await ready(await bus.subscribe(["raw_logs"], "g"))
    sent = [OutMessage(value=f"{k}-{i}".encode(), key=k.encode()) for i in range(150) for k in ("cn01", "cn02")]
    await bus.publish("raw_logs", sent)
    got = await drain(c, 300, per_fetch=120)
    assert sorted(values(got)) == sorted(m.value for m in sent)
    for k in ("cn01", "cn02"):
        assert [d.value for d in got if d.key == k.encode()] == [f"{k}-{i}".encode() for i in range(150)]
    await c.close()
    c2 = await ready(await bus.subscribe(["raw_logs"], "g"))
    assert await drain(c2, 1, quiet=2.0) == []
    await c2.close()


async def test_log_records_past_a_brokers_message_limit_together_still_travel(bus: Bus) -> None:
    """Packs stop at bus.pack_bytes: six 300 KB events of one key would be one 1.8 MB message, past
    Kafka's 1 MiB (max.request.size, message.max.bytes); each travels, in order."""
    c = await ready(await bus.subscribe(["events"], "g"))
    sent = [OutMessage(value=b"%d" % i + b"x" * 300_000, key=b"cn01") for i in range(6)]
    await bus.publish("events", sent)
    got = await drain(c, 6)
    assert values(got) == [m.value for m in sent]
    await c.close()


async def test_small_packs_come_a_batch_at_a_time_not_a_message_at_a_time(bus: Bus) -> None:
    """Many hosts each sending a little make packs of a record or two (a pack is one key's run): a
    stage still gets about the records it asks for per fetch once the consumer has seen a few (Kafka),
    or a fifth of ``prefetch`` messages (RabbitMQ's window is set as its consumer begins), never one
    pack per fetch as when every pack was counted full."""
    c = await ready(await bus.subscribe(["events"], "g"))
    sent = [OutMessage(value=b"e%d" % i, key=b"cn%02d" % (i % 40)) for i in range(400)]  # a key each record
    await bus.publish("events", sent)
    sizes: list[int] = []
    got: list[Delivery] = []
    while len(got) < 400:
        ds = await drain(c, 1, per_fetch=100, quiet=5.0)  # one fetch's worth, acked
        if not ds:
            break
        sizes.append(len(ds))
        got += ds
    assert sorted(values(got)) == sorted(m.value for m in sent)
    floor = bus_config("amqp://").prefetch // 5 if bus.kind == "amqp" else 40  # type: ignore[attr-defined]
    assert max(sizes) >= floor, sizes
    await c.close()


async def test_a_log_record_given_back_comes_again(bus: Bus) -> None:
    """Given back, a record comes again; on a broker so may the others of its message (acked or
    not): at least once, never lost, and nothing outside what was given out."""
    c = await ready(await bus.subscribe(["events"], "g"))
    await bus.publish("events", [OutMessage(value=f"e{i}".encode(), key=b"cn01") for i in range(20)])
    first = await drain(c, 20, ack=False)
    assert len(first) == 20
    await c.ack(first[:7] + first[8:])
    await c.nack(first[7:8])
    again = await drain(c, 1, quiet=3.0)
    assert first[7].value in values(again) and set(values(again)) <= set(values(first))
    assert all(d.redelivered for d in again)
    if bus.kind != "memory":  # type: ignore[attr-defined]
        assert sorted(values(again)) == sorted(values(first))  # its message, whole
    await c.close()
    c2 = await ready(await bus.subscribe(["events"], "g"))
    assert await drain(c2, 1, quiet=2.0) == []
    await c2.close()
