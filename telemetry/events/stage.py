"""The events stage: parsed log events and notifications from the bus into the event store.

It acknowledges a batch only after the store committed it (the BusStage
contract), and runs the retention loop that drops expired partitions and
sheds old ones when the disk runs low.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from telemetry.bus import Delivery, Receipt
from telemetry.bus.memory import MemoryBus, packed_batches
from telemetry.bus.topics import EVENTS, NOTIFICATIONS
from telemetry.events.backend import EventBackend
from telemetry.events.writer import ProcessEventStore
from telemetry.metrics import RECORDS_OUT
from telemetry.models import Event, Notification, Record
from telemetry.runtime import Runtime
from telemetry.stage import BusStage

log = logging.getLogger(__name__)


class EventStage(BusStage):
    name = "stage.events"
    group = "events"
    critical = True  # a store that cannot open (bad path, full disk) must stop the server, not hide
    topics: ClassVar[dict[str, type[Record]]] = {EVENTS: Event, NOTIFICATIONS: Notification}
    #: Up to ten of the parse stage's batches per transaction when the store falls behind: each commit
    #: costs an fsync and writes a segment of each full-text index. (It once mattered more: B-tree
    #: indexes on the random request and instance ids had most of their pages rewritten at each commit.
    #: Without them, commits of 4,000 and 20,000 rows cost the writer the same CPU per row, and the
    #: pipeline benchmark ran alike with 5,000 and 20,000 here.) A quiet stream still commits whatever
    #: arrived, at once (the bus's fetch does not wait to fill a batch).
    batch_size = 20000
    #: Under load the parse stage publishes its batches of thousands of events, and the stage waited
    #: ``batch_delay`` for more after each fetch: the writer (a process of its own) idled those 50 ms
    #: after every commit of 300-400 ms, a sixth of its time (``benchmarks/pipeline.py``, traced).
    #: A thousand events already spread a commit's fixed cost (an fsync, a full-text segment) thinly.
    fill_below = 1000
    #: Seconds between retention passes (ttl expiry and the free-space guard).
    maintenance_interval: float = 60.0

    def __init__(self, runtime: Runtime, store: EventBackend) -> None:
        super().__init__(runtime)
        self.store = store
        #: Behind a broker, with the store's writes in a child process, an event's bytes go to the child as
        #: they came: decoded where its row is built, not on the daemon's core, and cheaper to hand over
        #: than the decoded dict (the rules, the exporter and the sinks share one decoded copy: fastcodec).
        self._bytes_to_writer = not runtime.bus.in_process and isinstance(store, ProcessEventStore)
        #: In this process, the events the parse workers marshalled go to the writer as those bytes
        #: (``packed_batches``), not encoded again here: the largest single cost of this stage's core.
        self._packs_to_writer = (runtime.bus.in_process and isinstance(runtime.bus, MemoryBus)
                                 and isinstance(store, ProcessEventStore))
        #: The next batch goes to the writer process while it writes this one (``BusStage.handle_depth``):
        #: the store keeps no order but the ids', and the writer then starts on it at once.
        self.handle_depth = 2 if isinstance(store, ProcessEventStore) else 1
        self.stored = 0
        self._records_out = RECORDS_OUT.labels(stage=self.name)

    async def start(self) -> None:
        await asyncio.to_thread(self.store.maintain)
        await super().start()
        self.spawn(self._maintain, "retention")

    async def stop(self) -> None:
        await super().stop()
        self.store.close()

    def _record_of(self, cls: type[Record], value: bytes) -> Record:
        if cls is Event and self._bytes_to_writer:
            return value  # type: ignore[return-value] # see __init__
        return super()._record_of(cls, value)

    async def handle(self, records: list[tuple[Delivery, Record]]) -> list[Receipt]:
        # Rows are built where the store writes (its child process, or the thread): not in the event loop.
        # A record that cannot become a row is dead-lettered with its reason; the others are stored.
        deliveries = [d for d, _ in records]
        whole: list[tuple[bytes, list[Delivery]]] = []
        if self._packs_to_writer:
            rest, whole = packed_batches(deliveries)
        if whole:
            assert isinstance(self.store, ProcessEventStore)
            # The others' records as decoded (a message published as bytes has no record of its own).
            packed = {id(d) for _, ds in whole for d in ds} if rest else set()
            others = [r for d, r in records if id(d) not in packed] if rest else []
            new, bad = await asyncio.to_thread(self.store.insert_records, others, [blob for blob, _ in whole])
            deliveries = rest + [d for _, ds in whole for d in ds]  # the order the reasons' indexes count in
        else:
            new, bad = await asyncio.to_thread(self.store.insert_records, [r for _, r in records])
        self.stored += new
        self._records_out.inc(new)
        return [await self._dead_letter([(deliveries[i], reason) for i, reason in bad])] if bad else []

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.maintenance_interval)
            await asyncio.to_thread(self.store.maintain)

    def details(self) -> dict[str, Any]:
        expired = self.store.expired_on_arrival
        return {**super().details(), "stored": self.stored, "path": self.store.describe(),
                "expired_on_arrival": sum(expired.values()),
                **({"expired_on_arrival_by_source": dict(expired)} if expired else {})}
