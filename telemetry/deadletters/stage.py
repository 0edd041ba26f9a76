"""The dead-letter stage: refused records from the ``dead_letter`` topic into the dead-letter store.

It acknowledges only after the store committed, like every stage, so a
record refused downstream and acknowledged upstream is never lost to a
crash: it is here, with its reason, until the ttl or an operator's replay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from prometheus_client import Gauge

from telemetry.bus import Delivery, Receipt
from telemetry.bus.topics import DEAD_LETTER
from telemetry.deadletters.store import DeadLetterStore
from telemetry.metrics import BUS_CONSUMED, REGISTRY
from telemetry.models import Record
from telemetry.runtime import Runtime
from telemetry.stage import BusStage

STORED = Gauge("telemetry_dead_letters_stored", "Dead letters kept for reading and replay", registry=REGISTRY)
#: Seconds between ttl passes.
EXPIRE_EVERY = 600.0


class _Raw(Record):
    """A dead letter is raw bytes with headers; no record type applies."""


class DeadLetterStage(BusStage):
    name = "stage.dead_letters"
    group = "dead_letters"
    topics: ClassVar[dict[str, type[Record]]] = {DEAD_LETTER: _Raw}

    def __init__(self, runtime: Runtime, store: DeadLetterStore) -> None:
        super().__init__(runtime)
        self.store = store
        self.kept = 0

    async def start(self) -> None:
        STORED.set(await asyncio.to_thread(self.store.count))
        await super().start()
        self.spawn(self._expire, "expire")

    async def stop(self) -> None:
        await super().stop()
        await asyncio.to_thread(self.store.close)

    def _decode(self, deliveries: Sequence[Delivery]) -> tuple[list[tuple[Delivery, Any]], list[tuple[Delivery, str]]]:
        """Nothing to decode: the letter is kept as it arrived, headers and all."""
        BUS_CONSUMED.labels(topic=DEAD_LETTER).inc(len(deliveries))
        return [(d, None) for d in deliveries], []

    async def handle(self, records: list[tuple[Delivery, Record]]) -> list[Receipt]:
        rows = [(d.headers.get("stage", "?"), d.headers.get("topic", "?"), d.headers.get("reason", "unknown"),
                 d.headers.get("error", ""), d.key, bytes(d.value)) for d, _ in records]
        self.kept += await asyncio.to_thread(self.store.add, rows)
        STORED.set(await asyncio.to_thread(self.store.count))
        return []

    async def _expire(self) -> None:
        while True:
            await asyncio.to_thread(self.store.expire, time.time())
            STORED.set(await asyncio.to_thread(self.store.count))
            await asyncio.sleep(EXPIRE_EVERY)

    def details(self) -> dict[str, Any]:
        return {**super().details(), "kept": self.kept, "path": str(self.store.path)}
