"""Split deployment: ``telemetry agent`` -> broker -> ``telemetry server``, over RabbitMQ and Kafka.

The server is killed with SIGKILL in the middle of the stream and started
again; every record the agent put on the bus must reach the server's
durable sink (tests/bus_sink.py, a BusStage that fsyncs before it acks).
An "audit" consumer group in the test sees exactly what the agent published.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import pytest
from bus_sink import read_sinks
from busenv import BUS_SITE, MockKafka, amqp_url, kafka  # noqa: F401 (fixtures)

from telemetry.bus import Bus, Consumer, open_bus
from telemetry.bus.records import publish_records
from telemetry.config.core import BusConfig, KafkaOptions
from telemetry.models import Sample, decode

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SERVER_ENV = {"PYTHONPATH": BUS_SITE, "BUS_TEST_SINK": "1"}
KAFKA_FAST = {"session_timeout": "6s", "heartbeat_interval": "0.5s", "linger_ms": 1}


def bus_url(kind: str, request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("amqp_url") if kind == "amqp" else request.getfixturevalue("kafka").url


def bus_section(url: str, prefix: str) -> dict:
    return {"url": url, "topic_prefix": prefix, "kafka": KAFKA_FAST, "publish_timeout": "20s"}


async def audit_until_quiet(consumer: Consumer, ids: set[str], quiet: float, limit: float = 30.0) -> None:
    """Collect what reached the bus until nothing came for ``quiet`` s (or ``limit`` s passed)."""
    idle = 0.0
    deadline = time.monotonic() + limit
    while idle < quiet and time.monotonic() < deadline:
        got = await consumer.fetch(500, 0.5)
        if not got:
            idle += 0.5
            continue
        idle = 0.0
        ids.update(decode(Sample, d.value).message_id for d in got)
        await consumer.ack(got)


async def wait_sunk(folder: Path, want: set[str], timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        have = {r["id"] for r in read_sinks(folder)}
        if want <= have or time.monotonic() > deadline:
            return have
        await asyncio.sleep(0.5)


async def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


@pytest.mark.parametrize("kind", ["amqp", "kafka"])
async def test_agent_to_server_survives_server_kill(kind: str, request: pytest.FixtureRequest,
                                                    daemon_factory, tmp_path: Path) -> None:
    url = bus_url(kind, request)
    prefix = f"split{uuid.uuid4().hex[:6]}."
    cfg = BusConfig(url=url, topic_prefix=prefix, kafka=KafkaOptions(session_timeout=6, heartbeat_interval=0.5))
    bus: Bus = open_bus(cfg)
    await bus.start()
    audit = await bus.subscribe(["samples"], "audit")
    section = {"bus": bus_section(url, prefix)}
    server = daemon_factory("server", section, env=SERVER_ENV, sub="server").start()
    agent = daemon_factory("agent", {**section, "sources": {"host_metrics": {"interval": "1s"}}},
                           env={"PYTHONPATH": BUS_SITE}, sub="agent").start()
    seen: set[str] = set()
    sink_dir = tmp_path / "server"
    try:
        await wait_for(lambda: len(read_sinks(sink_dir)) > 0, 30, "the server to store its first samples")
        server.stop(signal.SIGKILL)  # mid-stream: whatever it had not acked comes again
        await audit_until_quiet(audit, seen, 2.0, limit=3.0)
        server.start()
        await audit_until_quiet(audit, seen, 2.0, limit=3.0)
        agent.stop()
        await audit_until_quiet(audit, seen, 3.0)
        assert len(seen) > 20, "the agent published host samples"
        have = await wait_sunk(sink_dir, seen, 40)
        missing = seen - have
        assert not missing, f"{len(missing)} of {len(seen)} records never reached the server"
    finally:
        await audit.close()
        await bus.close()
        server.kill()
        agent.kill()


async def test_two_kafka_servers_split_and_take_over(kafka: MockKafka, daemon_factory, tmp_path: Path) -> None:
    prefix = f"pair{uuid.uuid4().hex[:6]}."
    bus = open_bus(BusConfig(url=kafka.url, topic_prefix=prefix, kafka=KafkaOptions(linger_ms=1)))
    await bus.start()
    section = {"bus": bus_section(kafka.url, prefix)}

    def batch(i: int) -> list[Sample]:
        return [Sample(counter_name="m", counter_type="gauge", counter_volume=j, resource_id=f"r{j % 40}",
                       message_id=f"{i}-{j}") for j in range(40)]

    await publish_records(bus, batch(-1))  # creates the topic before the group splits it
    a = daemon_factory("server", section, env=SERVER_ENV, sub="a").start()
    b = daemon_factory("server", section, env=SERVER_ENV, sub="b").start()
    sent: set[str] = {s.message_id for s in batch(-1)}
    try:
        i = 0
        deadline = time.monotonic() + 60
        while not (read_sinks(tmp_path / "a") and read_sinks(tmp_path / "b")):  # both members got partitions
            assert time.monotonic() < deadline, "the two servers never split the partitions"
            await publish_records(bus, batch(i))
            sent |= {s.message_id for s in batch(i)}
            i += 1
            await asyncio.sleep(0.5)
        keys_a = {r["key"] for r in read_sinks(tmp_path / "a")}
        keys_b = {r["key"] for r in read_sinks(tmp_path / "b")}
        a.stop(signal.SIGKILL)
        for _ in range(10):  # keep producing while the group notices the loss
            await publish_records(bus, batch(i))
            sent |= {s.message_id for s in batch(i)}
            i += 1
            await asyncio.sleep(0.3)
        have = await wait_sunk(tmp_path, sent, 60)
        assert not sent - have, f"{len(sent - have)} records lost when a server died"
        after = {r["key"] for r in read_sinks(tmp_path / "b")}
        assert keys_a - keys_b <= after, "the survivor took over the dead server's partitions"
    finally:
        await bus.close()
        a.kill()
        b.kill()
