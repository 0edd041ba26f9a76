"""Typed records on top of the byte-level bus."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from telemetry.bus.base import NO_HEADERS, Bus, Delivery, OutMessage, all_durable, encode_object
from telemetry.metrics import BUS_PUBLISHED
from telemetry.models import R, RawLog, Record, Sample, decode, encode


def record_key(record: Record) -> bytes | None:
    """Partition key: per-source order must hold (host for logs, resource for samples)."""
    if isinstance(record, Sample):
        return record.resource_id.encode()
    host = getattr(record, "host", None)
    if isinstance(record, RawLog) or host:
        return str(host).encode()
    return None


async def publish_records(bus: Bus, records: Iterable[Record], fmt: str = "json", durable: bool = False) -> int:
    """Publish records to their kinds' topics; returns once the bus holds them all.

    With ``durable``, returns only once they are durable (the receipts
    completed): callers that acknowledge upstream when this returns (an HTTP
    2xx, an AMQP ack, an alarm state saved) ask for it, so on the in-memory
    bus they wait for the consumers' durable writes.
    """
    by_topic: dict[str, list[OutMessage]] = defaultdict(list)
    for r in records:
        by_topic[r.topic].append(out_message(bus, r, fmt, record_key(r)))
    count = 0
    receipts = []
    for topic, msgs in by_topic.items():
        receipts.append(await bus.publish(topic, msgs))
        BUS_PUBLISHED.labels(topic=topic).inc(len(msgs))
        count += len(msgs)
    if durable:
        await all_durable(receipts)
    return count


def out_message(bus: Bus, record: Any, fmt: str, key: bytes | None) -> OutMessage:
    """The message for ``record``: the object itself on the in-process bus, its bytes on a broker."""
    if bus.in_process:
        return OutMessage(b"", key, NO_HEADERS, record)
    return OutMessage(encode(record, fmt) if isinstance(record, Record) else encode_object(record), key)


def decode_delivery(cls: type[R], delivery: Delivery) -> R:
    return decode(cls, delivery.value)
