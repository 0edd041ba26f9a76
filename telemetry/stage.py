"""The consume → process → durable write → ack loop every server stage runs.

Written once so each stage keeps the delivery contract the same way:

* A batch is acknowledged only after ``handle`` returned and the receipts it
  returned completed (its write is durable, and what it published is durable
  downstream). Several batches may wait for their receipts at once, so a
  stage keeps working while the one after it writes.
* A message that cannot even be decoded is bad input: it is counted,
  published to the dead-letter topic with its reason, and acknowledged.
* When ``handle`` raises, the cause decides. A failure of the surroundings
  (a full disk, a lost database, the bus) gives the whole batch back to the
  bus and retries it with backoff, losing nothing; while it lasts the stage
  reports the problem on /healthz. Any other failure is taken to be the
  data's: the batch is split in halves until the record that fails alone is
  found, and that record is dead-lettered with the error, so one poison
  record never holds back the records after it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ValidationError

from telemetry.bus import Bus, BusError, Consumer, Delivery, OutMessage, Receipt, all_durable
from telemetry.bus.handover import handed_over
from telemetry.bus.topics import DEAD_LETTER
from telemetry.component import Component
from telemetry.metrics import (
    BUS_CONSUMED, BUS_REDELIVERED, RECORDS_DEAD_LETTERED, RECORDS_IN, RECORDS_REJECTED, STAGE_BATCH_SECONDS,
    STAGE_FAILURES, Bound,
)
from telemetry.fastcodec import decode_record
from telemetry.models import Record
from telemetry.runtime import Runtime

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = DEAD_LETTER
#: Bytes of a refused message kept in its dead letter.
DEAD_LETTER_MAX = 1 << 20
#: Seconds a stage may keep failing before /healthz calls it degraded.
DEGRADED_AFTER = 5.0


_consumed = Bound(BUS_CONSUMED)
_redelivered = Bound(BUS_REDELIVERED)


def reject_reason(exc: Exception) -> str:
    """A short, label-safe reason for a record that could not be decoded."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"invalid:{'.'.join(str(p) for p in first['loc']) or 'record'}"
    return f"undecodable:{type(exc).__name__}"


def environmental(exc: BaseException) -> bool:
    """A failure of what the stage writes to (disk, database, bus), not of the records it was given.

    Those are retried with the whole batch, never dead-lettered: the next
    attempt may succeed, and dead-lettering good records because a disk is
    full would lose them.
    """
    if isinstance(exc, (OSError, BusError, sqlite3.OperationalError, asyncio.TimeoutError, MemoryError)):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.OperationalError)


async def dead_letter(bus: Bus, stage: str, bad: Sequence[tuple[Delivery, str]],
                      errors: Sequence[str] | None = None) -> Receipt:
    """Count, log and publish refused messages (raw, cut at 1 MiB) to the dead-letter topic.

    Each keeps its ``reason``, original ``topic`` and ``stage`` as headers
    (and the ``error`` text when there is one), so an operator can see why
    and replay it once the cause is fixed.
    """
    msgs = []
    for i, (d, reason) in enumerate(bad):
        RECORDS_REJECTED.labels(stage=stage, reason=reason).inc()
        error = errors[i] if errors else ""
        log.warning("%s: dead-lettered a record from %s: %s%s", stage, d.topic, reason, f" ({error})" if error else "")
        headers = {"reason": reason, "topic": d.topic, "stage": stage}
        if error:
            headers["error"] = error
        msgs.append(OutMessage(value=d.value[:DEAD_LETTER_MAX], key=d.key, headers=headers))
    RECORDS_DEAD_LETTERED.labels(stage=stage).inc(len(bad))
    return await bus.publish(DEAD_LETTER_TOPIC, msgs)


class BusStage(Component, abc.ABC):
    """Subclass and set ``topics`` (logical topic -> record type) and ``group``; implement ``handle``."""

    topics: ClassVar[dict[str, type[Record]]] = {}
    group: str = "server"
    batch_size: int = 500
    fetch_timeout: float = 0.5
    #: Batches that may wait for their downstream receipts at once.
    max_inflight: int = 16
    #: Seconds a short batch waits for more records before it is handled (Logstash's
    #: pipeline.batch.delay, Kafka's fetch.max.wait). A broker hands a consumer what arrived
    #: since its last poll, often a dozen records; each batch costs a store transaction (an
    #: fsync, a full-text segment) and a commit, so batches of 15 cost several times what
    #: batches of 500 do per record. A full batch goes at once, a short one at most this much later.
    #: Not on consumers where waiting in fetch holds up other work (``Consumer.refetch_to_fill``).
    batch_delay: float = 0.05
    #: A short batch of at least this many records goes at once (None: ``batch_size``): the delay is
    #: for the handful of records a poll often brings, and a batch that already spreads the write's
    #: fixed cost thinly only leaves the writer idle while it waits for more.
    fill_below: int | None = None
    #: Batches handled at once. A stage whose ``handle`` waits on a child process (the parse worker, the
    #: store's writer) takes 2: the next batch is fetched, decoded and sent while the child works on
    #: the one before (``ChildProcess`` pipelines the calls), so the child does not idle while this
    #: process takes an answer in, acks and fetches. Its ``handle`` keeps its own order where it matters.
    handle_depth: int = 1
    #: False for a stage that only keeps figures in memory (the /metrics exporters): publishers'
    #: receipts then do not wait for it (see Bus.subscribe).
    writes_durably: ClassVar[bool] = True

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.consumer: Consumer | None = None
        self.processed = 0
        self.rejected = 0
        self._acking: deque[asyncio.Task[None]] = deque()
        self._backoff = 0.2  # seconds before the next batch after one given back for its surroundings
        #: When the current run of failures began (monotonic), and the last error.
        self._failing_since: float | None = None
        self._last_failure = ""
        self._records_in = RECORDS_IN.labels(stage=self.name)
        self._batch_seconds = STAGE_BATCH_SECONDS.labels(stage=self.name)

    @abc.abstractmethod
    async def handle(self, records: list[tuple[Delivery, Record]]) -> Sequence[Receipt] | None:
        """Process and durably write a batch; raise to have it redelivered (or split, see the module).

        Return the receipts of what it published, if any: the batch is acked once they complete.
        """

    async def start(self) -> None:
        self.consumer = await self.runtime.bus.subscribe(list(self.topics), self.group, self.writes_durably)
        self.spawn(self._run, "consume")

    async def stop(self) -> None:
        await self.cancel_tasks()
        for t in self._acking:
            t.cancel()
        if self._acking:
            await asyncio.wait(self._acking, timeout=1)
        self._acking.clear()
        if self.consumer is not None:
            await self.consumer.close()  # in-flight deliveries go back to the bus
            self.consumer = None

    async def _run(self) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        handling: deque[asyncio.Task[None]] = deque()  # with handle_depth > 1
        try:
            while True:
                while self._acking and self._acking[0].done():
                    self._acking.popleft().result()
                while handling and handling[0].done():
                    handling.popleft().result()
                if len(self._acking) >= self.max_inflight:
                    await asyncio.wait([self._acking[0]])
                    continue
                if len(handling) >= self.handle_depth:
                    await asyncio.wait([handling[0]])
                    continue
                deliveries = await consumer.fetch(self.batch_size, self.fetch_timeout)
                if not deliveries:
                    continue
                if (len(deliveries) < (self.fill_below or self.batch_size) and self.batch_delay > 0
                        and consumer.refetch_to_fill):
                    deliveries += await self._more(consumer, self.batch_size - len(deliveries))
                if self.handle_depth == 1:
                    await self._batch(consumer, deliveries)
                else:
                    handling.append(asyncio.create_task(self._batch(consumer, deliveries)))
        finally:
            for t in handling:  # each gives its batch back to the bus
                t.cancel()
            if handling:
                await asyncio.wait(handling)

    async def _batch(self, consumer: Consumer, deliveries: list[Delivery]) -> None:
        """Handle one fetched batch and have it acked once its output is durable; on a failure of its
        surroundings, give it back to the bus and wait (``_backoff``) before the stage goes on."""
        good, bad = self._decode(deliveries)
        began = time.perf_counter()
        try:
            receipts = list(await self._handle_or_split(good))
        except asyncio.CancelledError:
            await consumer.nack(deliveries)
            raise
        except Exception as exc:
            self._failed(exc)
            log.warning("%s: write failed (%s: %s); %d records go back to the bus, retry in %.1fs",
                        self.name, type(exc).__name__, exc, len(deliveries), self._backoff)
            await consumer.nack(deliveries)
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, 10.0)
            return
        self._backoff = 0.2
        if all(r.done for r in receipts):  # else once they are (``_ack_when_durable``)
            self._failing_since = None
        if good:
            self._batch_seconds.observe(time.perf_counter() - began)
        if bad:
            receipts.append(await self._dead_letter(bad))
        self._acking.append(asyncio.create_task(self._ack_when_durable(consumer, deliveries, receipts, len(good))))

    async def _more(self, consumer: Consumer, wanted: int) -> list[Delivery]:
        """Records arriving within ``batch_delay`` of a short fetch, up to ``wanted``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_delay
        more: list[Delivery] = []
        while len(more) < wanted:
            left = deadline - loop.time()
            if left <= 0:
                break
            got = await consumer.fetch(wanted - len(more), left)
            if not got:
                break
            more += got
        return more

    async def _ack_when_durable(self, consumer: Consumer, deliveries: list[Delivery], receipts: list[Receipt],
                                good: int) -> None:
        try:
            await all_durable(receipts)
        except BusError as exc:  # an output that never became durable (a publish given up after handle returned)
            self._failed(exc)
            log.warning("%s: output of %d records not durable (%s); they go back to the bus", self.name,
                        len(deliveries), exc)
            with contextlib.suppress(BusError):  # a consumer closing meanwhile gives them back anyway
                await consumer.nack(deliveries)
            return
        await consumer.ack(deliveries)
        self._failing_since = None
        self.processed += good

    async def _handle_or_split(self, records: list[tuple[Delivery, Record]]) -> list[Receipt]:
        """``handle`` the batch; if it fails because of its records, find and dead-letter the ones that fail alone."""
        if not records:
            return []
        try:
            return list(await self.handle(records) or ())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if environmental(exc):
                raise
            if len(records) == 1:
                [(d, _)] = records
                return [await self._dead_letter([(d, f"failed:{type(exc).__name__}")], [str(exc)[:500]])]
            half = len(records) // 2
            log.info("%s: a batch of %d failed (%s: %s); splitting it to find the record at fault",
                     self.name, len(records), type(exc).__name__, exc)
            return [*await self._handle_or_split(records[:half]), *await self._handle_or_split(records[half:])]

    def _failed(self, exc: BaseException) -> None:
        STAGE_FAILURES.labels(stage=self.name, reason=type(exc).__name__).inc()
        self._last_failure = f"{type(exc).__name__}: {exc}"[:300]
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def problem(self) -> str | None:
        since = self._failing_since
        if since is not None and time.monotonic() - since >= DEGRADED_AFTER:
            return f"writes failing for {time.monotonic() - since:.0f}s, batches retried: {self._last_failure}"
        return None

    def _handed_over(self, deliveries: Sequence[Delivery]) -> list[tuple[Delivery, Any]] | None:
        """The batch's records, counted once for the batch, when every one was handed over in this process
        (the publishers' own objects); None when one came as bytes, for the stage to decode each."""
        taken = handed_over(deliveries)
        if taken is None:
            return None
        records, by_topic, again = taken
        for topic, n in by_topic.items():
            _consumed(topic).inc(n)
        for topic, n in again.items():
            _redelivered(topic).inc(n)
        if records:
            self._records_in.inc(len(records))
        return records

    def _decode(self, deliveries: Sequence[Delivery]) -> tuple[list[tuple[Delivery, Record]], list[tuple[Delivery, str]]]:
        records = self._handed_over(deliveries)
        if records is not None:
            return records, []
        good: list[tuple[Delivery, Record]] = []
        bad: list[tuple[Delivery, str]] = []
        topics = self.topics
        consumed: dict[str, int] = {}
        for d in deliveries:
            consumed[d.topic] = consumed.get(d.topic, 0) + 1
            if d.redelivered:
                _redelivered(d.topic).inc()
            if d.record is not None:  # handed over in this process, as its publisher built it
                good.append((d, d.record))
                continue
            cls = topics.get(d.topic)
            try:
                if cls is None:
                    raise ValueError(f"no record type for topic {d.topic!r}")
                good.append((d, self._record_of(cls, d.value)))
            except Exception as exc:  # bad input is counted and set aside, never fatal
                bad.append((d, reject_reason(exc)))
        for topic, n in consumed.items():
            _consumed(topic).inc(n)
        if good:
            self._records_in.inc(len(good))
        return good, bad

    def _record_of(self, cls: type[Record], value: bytes) -> Any:
        """The record of a message's bytes (an event as its contract dict, as handed over in this
        process); raises for bad input (the reason comes from the exception)."""
        return decode_record(cls, value)

    async def _dead_letter(self, bad: list[tuple[Delivery, str]], errors: Sequence[str] | None = None) -> Receipt:
        self.rejected += len(bad)
        return await dead_letter(self.runtime.bus, self.name, bad, errors)

    def details(self) -> dict[str, Any]:
        return {"topics": ",".join(self.topics), "processed": self.processed, "rejected": self.rejected}
