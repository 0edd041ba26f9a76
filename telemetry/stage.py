"""The consume → process → durable write → ack loop every server stage runs.

Written once so each stage keeps the delivery contract the same way: a batch
is acknowledged only after ``handle`` returned (its write is durable); if
``handle`` raises, the batch is given back to the bus and retried with
backoff, so nothing acknowledged is ever lost. A message that cannot even be
decoded is bad input: it is counted, published to the dead-letter topic with
its reason, and acknowledged, so it never blocks the good records beside it.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ValidationError

from telemetry.bus import Bus, Consumer, Delivery, OutMessage
from telemetry.bus.topics import DEAD_LETTER
from telemetry.component import Component
from telemetry.metrics import BUS_CONSUMED, BUS_REDELIVERED, RECORDS_IN, RECORDS_REJECTED
from telemetry.models import Record, decode
from telemetry.runtime import Runtime

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = DEAD_LETTER


def reject_reason(exc: Exception) -> str:
    """A short, label-safe reason for a record that could not be decoded."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"invalid:{'.'.join(str(p) for p in first['loc']) or 'record'}"
    return f"undecodable:{type(exc).__name__}"


async def dead_letter(bus: Bus, stage: str, bad: Sequence[tuple[Delivery, str]]) -> None:
    """Count, log and publish refused messages (raw, cut at 1 MiB) to the dead-letter topic.

    Each keeps its ``reason``, original ``topic`` and ``stage`` as headers, so
    an operator can see why and replay it once the cause is fixed.
    """
    for d, reason in bad:
        RECORDS_REJECTED.labels(stage=stage, reason=reason).inc()
        log.warning("%s: rejected a record from %s: %s", stage, d.topic, reason)
    msgs = [
        OutMessage(value=d.value[: 1 << 20], key=d.key, headers={"reason": reason, "topic": d.topic, "stage": stage})
        for d, reason in bad
    ]
    await bus.publish(DEAD_LETTER_TOPIC, msgs)


class BusStage(Component, abc.ABC):
    """Subclass and set ``topics`` (logical topic -> record type) and ``group``; implement ``handle``."""

    topics: ClassVar[dict[str, type[Record]]] = {}
    group: str = "server"
    batch_size: int = 500
    fetch_timeout: float = 0.5

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.consumer: Consumer | None = None
        self.processed = 0
        self.rejected = 0

    @abc.abstractmethod
    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        """Process and durably write a batch; raise to have it redelivered."""

    async def start(self) -> None:
        self.consumer = await self.runtime.bus.subscribe(list(self.topics), self.group)
        self.spawn(self._run, "consume")

    async def stop(self) -> None:
        await self.cancel_tasks()
        if self.consumer is not None:
            await self.consumer.close()  # in-flight deliveries go back to the bus
            self.consumer = None

    async def _run(self) -> None:
        assert self.consumer is not None
        backoff = 0.2
        while True:
            deliveries = await self.consumer.fetch(self.batch_size, self.fetch_timeout)
            if not deliveries:
                continue
            good, bad = self._decode(deliveries)
            try:
                if good:
                    await self.handle(good)
            except asyncio.CancelledError:
                await self.consumer.nack(deliveries)
                raise
            except Exception:
                log.exception("%s: write failed; %d records go back to the bus", self.name, len(deliveries))
                await self.consumer.nack(deliveries)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.2
            if bad:
                await self._dead_letter(bad)
            await self.consumer.ack(deliveries)
            self.processed += len(good)

    def _decode(self, deliveries: Sequence[Delivery]) -> tuple[list[tuple[Delivery, Record]], list[tuple[Delivery, str]]]:
        good: list[tuple[Delivery, Record]] = []
        bad: list[tuple[Delivery, str]] = []
        for d in deliveries:
            BUS_CONSUMED.labels(topic=d.topic).inc()
            if d.redelivered:
                BUS_REDELIVERED.labels(topic=d.topic).inc()
            cls = self.topics.get(d.topic)
            try:
                if cls is None:
                    raise ValueError(f"no record type for topic {d.topic!r}")
                good.append((d, decode(cls, d.value)))
            except Exception as exc:  # bad input is counted and set aside, never fatal
                bad.append((d, reject_reason(exc)))
        if good:
            RECORDS_IN.labels(stage=self.name).inc(len(good))
        return good, bad

    async def _dead_letter(self, bad: list[tuple[Delivery, str]]) -> None:
        self.rejected += len(bad)
        await dead_letter(self.runtime.bus, self.name, bad)

    def details(self) -> dict[str, Any]:
        return {"topics": ",".join(self.topics), "processed": self.processed, "rejected": self.rejected}
