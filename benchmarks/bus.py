"""Records per second through each bus, batching on: publish (confirmed) then consume+ack.

    .venv/bin/python benchmarks/bus.py [N]

The memory bus is the peer every broker is measured against in the same run
(ratio = broker / memory); RabbitMQ is the local broker (a private vhost),
Kafka is librdkafka's mock cluster (in-process broker, so its figure is an
upper bound of the client's overhead, not of a real cluster); beside it, bare
aiokafka on the same cluster (the mock's own ceiling for this client), and
our ratio to it.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from busenv import MockKafka, patch_aiokafka_for_mock, rabbit_vhost

from telemetry.bus import MemoryBus, open_bus
from telemetry.bus.base import Bus, OutMessage
from telemetry.config.core import BusConfig, KafkaOptions
from telemetry.models import Sample

BATCH = 500


async def measure(bus: Bus, n: int) -> tuple[float, float]:
    await bus.start()
    consumer = await bus.subscribe(["samples"], "bench")
    body = [OutMessage(value=Sample(counter_name="cpu", counter_type="gauge", counter_volume=i,
                                    resource_id=f"r{i % 64}").to_json(), key=f"r{i % 64}".encode())
            for i in range(BATCH)]
    t0 = time.perf_counter()
    for _ in range(n // BATCH):
        await bus.publish("samples", body)
    pub = n / (time.perf_counter() - t0)
    got = first = 0
    t0 = 0.0
    while got < n:
        ds = await consumer.fetch(BATCH, 5.0)
        if not ds:
            raise SystemExit(f"{bus.describe()}: only {got} of {n} came back")
        if not t0:  # from the first records (not counted): a Kafka group join is not the consumer's rate
            t0, first = time.perf_counter(), len(ds)
        await consumer.ack(ds)
        got += len(ds)
    con = (n - first) / (time.perf_counter() - t0)
    await consumer.close()
    await bus.close()
    return pub, con


async def bare_aiokafka(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    """aiokafka alone on the same mock cluster, set up as our Kafka bus sets it up.

    Producer: acks=all, idempotence, the bus's default compression, linger and batch size, a batch of sends
    awaited together. Consumer: a group, manual commits, getmany() of up to a batch, a commit
    after each. The same records (bytes and keys) as ``measure``; no decoding either side.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    body = [(Sample(counter_name="cpu", counter_type="gauge", counter_volume=i,
                    resource_id=f"r{i % 64}").to_json(), f"r{i % 64}".encode()) for i in range(BATCH)]
    k = KafkaOptions()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                compression_type=k.compression, linger_ms=k.linger_ms, max_batch_size=k.batch_bytes)
    await producer.start()
    t0 = time.perf_counter()
    for _ in range(n // BATCH):
        futures = [await producer.send(topic, value, key=key) for value, key in body]
        await asyncio.gather(*futures)
    pub = n / (time.perf_counter() - t0)
    await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}.bare",
                                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=BATCH)
    await consumer.start()
    got = first = 0
    t0 = 0.0
    try:
        while got < n:
            batch = await consumer.getmany(timeout_ms=5000, max_records=BATCH)
            if not batch:
                raise SystemExit(f"bare aiokafka: only {got} of {n} came back")
            if not t0:  # from the first records (not counted), as in measure()
                t0, first = time.perf_counter(), sum(len(v) for v in batch.values())
            got += sum(len(v) for v in batch.values())
            await consumer.commit()
    finally:
        await consumer.stop()
    return pub, (n - first) / (time.perf_counter() - t0)


async def main(n: int) -> None:
    patch_aiokafka_for_mock()
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    rows = [("memory", await measure(MemoryBus(prefix), n))]
    with rabbit_vhost("bench") as url:
        rows.append(("amqp (RabbitMQ, confirms)", await measure(open_bus(BusConfig(url=url, topic_prefix=prefix)), n)))
    k = MockKafka()
    rows.append(("kafka (mock cluster, acks=all)",
                 await measure(open_bus(BusConfig(url=k.url, topic_prefix=prefix)), n)))
    bare = await bare_aiokafka(k.bootstrap, f"{prefix}bare", n)
    rows.append(("bare aiokafka, same mock cluster", bare))
    k.close()
    base_pub, base_con = rows[0][1]
    print(f"{n} records, batches of {BATCH}")
    print(f"{'bus':32} {'publish rec/s':>14} {'consume rec/s':>14} {'pub ratio':>10} {'con ratio':>10}")
    for name, (pub, con) in rows:
        print(f"{name:32} {pub:14,.0f} {con:14,.0f} {pub / base_pub:10.3f} {con / base_con:10.3f}")
    (_, (k_pub, k_con)), (_, (b_pub, b_con)) = rows[-2], rows[-1]
    print(f"our Kafka bus / bare aiokafka on the same cluster: publish {k_pub / b_pub:.2f}x, "
          f"consume {k_con / b_con:.2f}x")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
