"""The bus contract every broker implementation keeps.

``publish`` returns only once the broker holds the batch durably (publisher
confirm, ``acks=all``, or the in-memory queue), so an agent may advance its
file checkpoint when it returns. A consumer acknowledges deliveries
explicitly, after its own write is durable; anything not acknowledged when
the consumer goes away is delivered again. Stores dedup on record ids, so
that redelivery never double-counts.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class OutMessage:
    """A message to publish: ``key`` keeps per-source order within a partition."""

    value: bytes
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Delivery:
    """A message handed to a consumer, to be acked or nacked."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    redelivered: bool = False
    #: Broker-specific handle used by ack/nack (delivery tag, offset, ...).
    token: Any = None


class BusError(Exception):
    """The bus could not take or give messages (broker down, closed, ...)."""


class Consumer(abc.ABC):
    """Reads from one or more topics as a member of a consumer group."""

    @abc.abstractmethod
    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Delivery]:
        """Up to ``max_records`` deliveries; waits up to ``timeout`` s for the first."""

    @abc.abstractmethod
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """The consumer's write of these is durable: never deliver them again."""

    @abc.abstractmethod
    async def nack(self, deliveries: Sequence[Delivery], requeue: bool = True) -> None:
        """Give these back (``requeue``) or drop them (after dead-lettering them)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the group; unacked deliveries go back to the topic."""


class Bus(abc.ABC):
    """A broker connection: publish batches, open consumers."""

    def __init__(self, topic_prefix: str = "") -> None:
        self.topic_prefix = topic_prefix

    def topic(self, name: str) -> str:
        """The broker-side name of a logical topic (``samples`` -> ``telemetry.samples``)."""
        return f"{self.topic_prefix}{name}"

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and disconnect."""

    @abc.abstractmethod
    async def publish(self, topic: str, messages: Sequence[OutMessage]) -> None:
        """Return once the broker holds every message durably; raise BusError otherwise."""

    @abc.abstractmethod
    async def subscribe(self, topics: Sequence[str], group: str) -> Consumer:
        """A consumer in ``group`` over ``topics`` (logical names)."""

    def describe(self) -> str:
        return type(self).__name__
