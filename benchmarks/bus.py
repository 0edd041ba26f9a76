"""Records per second through each bus, batching on: publish (confirmed) then consume+ack.

    .venv/bin/python benchmarks/bus.py [N]

The memory bus is the peer every broker is measured against in the same run
(ratio = broker / memory); RabbitMQ is the local broker (a private vhost),
Kafka is librdkafka's mock cluster (in-process broker, so its figure is an
upper bound of the client's overhead, not of a real cluster).
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
from telemetry.config.core import BusConfig
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
    t0 = time.perf_counter()
    got = 0
    while got < n:
        ds = await consumer.fetch(BATCH, 5.0)
        if not ds:
            raise SystemExit(f"{bus.describe()}: only {got} of {n} came back")
        await consumer.ack(ds)
        got += len(ds)
    con = n / (time.perf_counter() - t0)
    await consumer.close()
    await bus.close()
    return pub, con


async def main(n: int) -> None:
    patch_aiokafka_for_mock()
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    rows = [("memory", await measure(MemoryBus(prefix), n))]
    with rabbit_vhost("bench") as url:
        rows.append(("amqp (RabbitMQ, confirms)", await measure(open_bus(BusConfig(url=url, topic_prefix=prefix)), n)))
    k = MockKafka()
    rows.append(("kafka (mock cluster, acks=all)",
                 await measure(open_bus(BusConfig(url=k.url, topic_prefix=prefix)), n)))
    k.close()
    base_pub, base_con = rows[0][1]
    print(f"{n} records, batches of {BATCH}")
    print(f"{'bus':32} {'publish rec/s':>14} {'consume rec/s':>14} {'pub ratio':>10} {'con ratio':>10}")
    for name, (pub, con) in rows:
        print(f"{name:32} {pub:14,.0f} {con:14,.0f} {pub / base_pub:10.3f} {con / base_con:10.3f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
