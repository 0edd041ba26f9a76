"""Real brokers for the bus tests: a private RabbitMQ vhost and librdkafka's mock Kafka cluster.

No broker is faked here: the vhost lives on the machine's RabbitMQ, and the
mock cluster is librdkafka's own, speaking the Kafka protocol over TCP, which
aiokafka talks to exactly as to a real cluster.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

RABBIT = "127.0.0.1:5672"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def rabbit_vhost(tag: str = "bus") -> Iterator[str]:
    """A fresh vhost on the local RabbitMQ; yields its amqp:// URL and deletes it after."""
    vhost = f"bus-{tag}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBIT}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def broker_outage(seconds: float = 2.0) -> None:
    """Stop the RabbitMQ application briefly; start_app always runs (other suites share the broker)."""
    try:
        rabbitmqctl("stop_app")
        time.sleep(seconds)
    finally:
        rabbitmqctl("start_app")


class MockKafka:
    """librdkafka's in-process mock cluster; ``bootstrap`` is its brokers' real TCP addresses."""

    def __init__(self, brokers: int = 1) -> None:
        import confluent_kafka

        # The mock cluster lives as long as this client handle does.
        self._handle = confluent_kafka.Producer({"test.mock.num.brokers": brokers})
        md = self._handle.list_topics(timeout=10)
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())
        self.url = f"kafka://{self.bootstrap}"

    def close(self) -> None:
        self._handle.flush(1)
        del self._handle


def patch_aiokafka_for_mock(delay: float = 0.3) -> None:
    """Make the group leader send SyncGroup a moment after the followers.

    librdkafka's mock coordinator differs from a real broker in one respect:
    once the leader's SyncGroup carries every member's assignment it marks the
    group stable, and a follower's SyncGroup that arrives after that gets
    INVALID_REQUEST (a real broker hands it its assignment). Real clients
    never notice because the leader computes assignments slower than a
    follower answers; in one Python process the leader often wins. Delaying
    the leader restores the real ordering. Tests only: production code talks
    to real brokers.
    """
    import asyncio

    from aiokafka.consumer import group_coordinator as gc

    if getattr(gc.CoordinatorGroupRebalance, "_mock_patched", False):
        return
    original = gc.CoordinatorGroupRebalance._on_join_leader

    async def _on_join_leader(self, response):  # type: ignore[no-untyped-def]
        await asyncio.sleep(delay)
        return await original(self, response)

    gc.CoordinatorGroupRebalance._on_join_leader = _on_join_leader
    gc.CoordinatorGroupRebalance._mock_patched = True


#: Put on PYTHONPATH of daemon subprocesses: the test sink and the mock-Kafka compensation.
BUS_SITE = str(__import__("pathlib").Path(__file__).parent / "bus_site")


@pytest.fixture(scope="module")
def amqp_url() -> Iterator[str]:
    """A private vhost for one test module."""
    with rabbit_vhost("t") as url:
        yield url


@pytest.fixture(scope="module")
def kafka() -> Iterator[MockKafka]:
    """A mock Kafka cluster for one test module."""
    patch_aiokafka_for_mock()
    k = MockKafka()
    yield k
    k.close()
