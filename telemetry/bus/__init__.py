"""The central bus: memory (all-in-one), RabbitMQ (kombu) and Kafka (aiokafka)."""

from __future__ import annotations

from telemetry.bus.base import (
    DURABLE, NO_HEADERS, Bus, BusClosed, BusError, Consumer, Delivery, OutMessage, Receipt, all_durable,
)
from telemetry.bus.memory import MemoryBus
from telemetry.config.core import BusConfig

__all__ = ["DURABLE", "NO_HEADERS", "Bus", "BusClosed", "BusError", "Consumer", "Delivery", "MemoryBus", "OutMessage", "Receipt",
           "all_durable", "open_bus"]


def open_bus(config: BusConfig) -> Bus:
    """The bus named by the configured URL's scheme."""
    scheme = config.url.split("://", 1)[0]
    if scheme == "memory":
        return MemoryBus(topic_prefix=config.topic_prefix)
    if scheme in ("amqp", "amqps"):
        from telemetry.bus.amqp import AmqpBus  # kombu is imported only when used

        return AmqpBus(config)
    if scheme == "kafka":
        from telemetry.bus.kafka import KafkaBus

        return KafkaBus(config)
    raise BusError(f"unsupported bus URL scheme {scheme}:// (memory, amqp, amqps or kafka)")
