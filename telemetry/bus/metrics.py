"""Broker-side self-metrics: lag, queue depth, reconnections.

Produce, consume and redelivery rates live in ``telemetry.metrics`` (the
stages count them); these are the figures only a broker client can see.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from telemetry.metrics import REGISTRY

BUS_RECONNECTIONS = Counter(
    "telemetry_bus_reconnections", "Times a bus client lost its broker and connected again", ["bus"],
    registry=REGISTRY,
)
BUS_QUEUE_DEPTH = Gauge(
    "telemetry_bus_queue_depth", "AMQP: messages ready in a group's queue (not yet delivered)",
    ["topic", "group"], registry=REGISTRY,
)
BUS_CONSUMER_LAG = Gauge(
    "telemetry_bus_consumer_lag", "Kafka: records between a group's position and the partition's end",
    ["topic", "partition", "group"], registry=REGISTRY,
)
BUS_PUBLISH_RETRIES = Counter(
    "telemetry_bus_publish_retries", "Batches published again after the broker failed to confirm them", ["bus"],
    registry=REGISTRY,
)
BUS_OFFSETS_SKIPPED = Counter(
    "telemetry_bus_kafka_offsets_skipped", "Kafka: offsets a group's consumer jumped over in a partition, records "
    "the broker no longer held when it came to them (retention deleted them unread)", ["topic", "group"],
    registry=REGISTRY,
)
