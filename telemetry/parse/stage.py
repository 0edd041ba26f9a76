"""The server's parse stage: RawLog records in, Events out, counted per type.

Events are published to the ``events`` topic, and the RawLogs acknowledged
only once their events are durable on the bus (BusStage's contract: behind a
broker the next batch is parsed while the broker confirms, and the ack waits
for that receipt). An Event takes its RawLog's id: a RawLog redelivered
after a crash yields the same event id, and the event stores drop the copy.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from functools import partial
from typing import Any, ClassVar

from prometheus_client import Counter, Histogram

from telemetry.bus import Delivery, Receipt
from telemetry.bus.memory import MemoryBus
from telemetry.metrics import BUS_PUBLISHED, RECORDS_OUT, REGISTRY, Bound
from telemetry.models import Event, RawLog, Record
from telemetry.parse import budget
from telemetry.parse.parser import Outcome, Parser
from telemetry.parse.sorting import Sorted, sort_part
from telemetry.parse.worker import ParseWorker, Parsed, encoded, parsed
from telemetry.runtime import Runtime
from telemetry.stage import BusStage

PARSED = Counter("telemetry_parse_matches", "Entries a grok expression matched, by log type", ["type"],
                 registry=REGISTRY)
FAILED = Counter("telemetry_parse_failures", "Entries no expression matched (_grokparsefailure), by log type",
                 ["type"], registry=REGISTRY)
TIMED_OUT = Counter("telemetry_parse_timeouts", "Entries cut by the time budget (_groktimeout), by log type",
                    ["type"], registry=REGISTRY)
DROPPED = Counter("telemetry_parse_dropped", "Entries a drop step discarded, by log type", ["type"],
                  registry=REGISTRY)
BATCH_SECONDS = Histogram("telemetry_parse_batch_seconds", "Time spent parsing one batch of entries",
                          registry=REGISTRY)
_COUNTERS = {Outcome.MATCH: Bound(PARSED), Outcome.FAILURE: Bound(FAILED), Outcome.TIMEOUT: Bound(TIMED_OUT)}
_DROPPED = Bound(DROPPED)
_PUBLISHED = BUS_PUBLISHED.labels(topic=Event.topic)


class ParseStage(BusStage):
    name = "stage.parse"
    group = "parse"
    topics: ClassVar[dict[str, type[Record]]] = {"raw_logs": RawLog}
    #: A batch is one round trip to the workers: larger ones spread its fixed cost (a thread hop,
    #: the wait for the event loop to take the answer) over more entries. 4,000 rather than 2,000:
    #: the all-in-one 48.1-48.5 -> 46.1-47.6 CPU s per million lines (``benchmarks/pipeline.py
    #: --lines 300000``, three rounds alternating); behind a broker alike (its prefetch window holds
    #: 10,000 raw records, two and a half batches).
    batch_size = 4000

    def __init__(self, runtime: Runtime, parser: Parser | None = None) -> None:
        super().__init__(runtime)
        cfg = runtime.settings.parse
        # Built here, not in start(): a broken operator pattern fails the daemon's start loudly.
        self.parser = parser or Parser.from_config(cfg)
        #: Child processes parsing beside the daemon (parse.workers); none with a parser given (tests, embedders).
        self.workers = [ParseWorker(cfg) for _ in range(cfg.workers)] if parser is None else []
        #: With workers, the next batch goes to them while they parse this one (``BusStage.handle_depth``):
        #: each worker idled four tenths of the time, while the daemon took its answer in, published the
        #: events and fetched and sent the next batch (``benchmarks/pipeline.py``, traced). The events
        #: still go out in the batches' order (``handle``).
        self.handle_depth = 2 if self.workers else 1
        self._published: asyncio.Future[None] | None = None  # the batch before's publishing, done or not
        self.outcomes: Tally[str] = Tally()
        self._fmt = runtime.settings.bus.format
        self._records_out = RECORDS_OUT.labels(stage=self.name)

    def _record_of(self, cls: type[Record], value: bytes) -> Record:
        # With workers, a broker's bytes go to them as they are: decoding is theirs, off this core
        # (what cannot be decoded comes back with the reason the bus stage would give).
        return value if self.workers else super()._record_of(cls, value)  # type: ignore[return-value]

    async def stop(self) -> None:
        await super().stop()
        for w in self.workers:
            await asyncio.to_thread(w.close)

    async def _parse(self, raws: list[RawLog]) -> list[tuple[list[Parsed], bytes | None]]:
        """Each entry's event, its type (dropped) or the reason it cannot become one, in the workers when there
        are, which encode the events for a broker too; by the part of the batch each worker took, with its
        events packed when the bus is this process's (``ParseWorker.parse_packed``)."""
        workers = self.workers
        fmt = None if self.runtime.bus.in_process else self._fmt  # a broker's: the events come ``Encoded``
        if workers:
            size = -(-len(raws) // len(workers))
            chunks = [raws[i:i + size] for i in range(0, len(raws), size)]
            # In order: the batch after this one is already on its way to the workers (handle_depth).
            if fmt is None and isinstance(self.runtime.bus, MemoryBus):
                return list(await asyncio.gather(*(w.child.in_order(partial(w.parse_packed, c))
                                                   for w, c in zip(workers, chunks))))
            parts = await asyncio.gather(*(w.child.in_order(partial(w.parse, c, fmt))
                                           for w, c in zip(workers, chunks)))
            return [(part, None) for part in parts]
        # In the event loop's (main) thread on purpose: the fast engine's time budget is a SIGALRM timer.
        with budget.armed():
            results = [parsed(self.parser, raw) for raw in raws]
        return [([encoded(r, fmt) for r in results] if fmt else results, None)]

    async def handle(self, records: list[tuple[Delivery, Record]]) -> list[Receipt]:
        # Events go out as their contract dicts (fastcodec.event_dict): the dict itself on the in-process
        # bus, its JSON (the bytes an Event model would give) on a broker, never a model per entry.
        # A record that cannot become an event (a bug, or input no bound caught) is dead-lettered
        # with its reason; the others go on.
        raws = [raw for _, raw in records]
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before, self._published = self._published, mine
        try:
            with BATCH_SECONDS.time():
                parts = await self._parse(raws)  # type: ignore[arg-type]
            if before is not None and not before.done():
                await asyncio.wait([before])  # the batch before publishes first (per-source order)
            return await self._publish(records, parts)
        finally:
            if not mine.done():
                mine.set_result(None)

    async def _publish(self, records: list[tuple[Delivery, Record]], parts: list[tuple[list[Parsed], bytes | None]]
                       ) -> list[Receipt]:
        in_process = self.runtime.bus.in_process
        bus = self.runtime.bus
        into = Sorted()
        receipts: list[Receipt] = []
        published = 0
        at = 0
        for results, packed in parts:
            out, events, keys = sort_part(records[at:at + len(results)], results, into)
            at += len(results)
            published += len(out) + len(events)
            if packed is not None:  # every event of the part, in order, as the worker marshalled them
                assert isinstance(bus, MemoryBus)
                receipts.append(await bus.publish_objects(Event.topic, events, keys, packed=packed))
            elif in_process:
                receipts.append(await bus.publish_objects(Event.topic, events, keys))
            else:
                # A broker confirms persistent messages once they are on its disk, tens of milliseconds
                # (40% of this stage's time behind RabbitMQ): the next batch is parsed meanwhile. The raw
                # logs are still acked only once the broker confirmed their events (the receipt).
                receipts.append(Receipt.after(bus.publish(Event.topic, out)))
        for (outcome, type_), n in into.counts.items():  # a counter per label set per batch, not per entry
            _COUNTERS[outcome](type_).inc(n)
            self.outcomes[outcome] += n
        for type_, n in into.dropped.items():
            _DROPPED(type_).inc(n)
        _PUBLISHED.inc(published)
        self._records_out.inc(published)
        if into.bad:
            receipts.append(await self._dead_letter(into.bad))
        return receipts

    def details(self) -> dict[str, Any]:
        return {**super().details(), **{k: self.outcomes[k] for k in (Outcome.MATCH, Outcome.FAILURE, Outcome.TIMEOUT)}}
