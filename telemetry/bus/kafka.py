"""The Kafka bus (aiokafka).

Topics are ``<prefix><name>`` (``telemetry.samples``); records arrive keyed
(``telemetry.bus.records.record_key``: host for logs, resource for samples)
so one source's records share a partition and keep their order. The
producer runs with ``acks=all`` and idempotence: ``publish`` returns once
every in-sync replica holds the batch.

Consumers join the group ``<prefix><group>`` with auto-commit off. Kafka
has no per-message ack, only a committed offset per partition, so the
Consumer contract maps onto offsets like this: every fetched offset is
tracked as in flight; ``ack`` marks offsets done and commits, per
partition, only up to the first offset still in flight (committing past
an unacked record would lose it if we crashed). ``nack(requeue=True)``
seeks the partition back to the lowest nacked offset, so that record and
everything after it are fetched again (Kafka's order is per partition, so
this is also what keeps per-key order). Deliveries fetched before a seek or
a rebalance become stale: acking them is ignored and their records come
again, to this consumer or to the partition's new owner.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from telemetry.bus.base import Bus, BusError, Consumer, DURABLE, Delivery, OutMessage, Receipt
from telemetry.bus.metrics import BUS_CONSUMER_LAG, BUS_OFFSETS_SKIPPED, BUS_RECONNECTIONS
from telemetry.bus.packing import PACK_HEADER, PACKED_TOPICS, PackRate, bodies, unpacked
from telemetry.config.core import BusConfig

log = logging.getLogger(__name__)

LAG_EVERY = 5.0  # seconds between consumer-lag updates


def bootstrap_servers(url: str) -> str:
    """``kafka://h1:9092,h2:9092`` -> ``h1:9092,h2:9092``."""
    servers = url.split("://", 1)[1].strip("/")
    if not servers:
        raise BusError(f"the Kafka URL {url!r} names no broker (kafka://host:9092)")
    return servers


class KafkaBus(Bus):
    def __init__(self, config: BusConfig) -> None:
        super().__init__(config.topic_prefix)
        self.config = config
        self.servers = bootstrap_servers(config.url)
        self._producer: AIOKafkaProducer | None = None
        self._closed = False
        self._sending = asyncio.Lock()

    def describe(self) -> str:
        return f"kafka://{self.servers}"

    def client_options(self) -> dict[str, Any]:
        """TLS and SASL passed through to aiokafka, for producers and consumers alike."""
        tls, sasl = self.config.tls, self.config.sasl
        opts: dict[str, Any] = {"bootstrap_servers": self.servers}
        if tls.enabled:
            ctx = create_ssl_context(cafile=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
            if not tls.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            opts["ssl_context"] = ctx
        if sasl is not None:
            opts.update(
                sasl_mechanism=sasl.mechanism,
                sasl_plain_username=sasl.username,
                sasl_plain_password=sasl.password.get_secret_value(),
            )
        opts["security_protocol"] = ("SASL_" if sasl else "") + ("SSL" if tls.enabled else "PLAINTEXT")
        return opts

    async def start(self) -> None:
        k = self.config.kafka
        producer = AIOKafkaProducer(
            acks="all",
            enable_idempotence=True,
            compression_type=None if k.compression == "none" else k.compression,
            linger_ms=k.linger_ms,
            max_batch_size=k.batch_bytes,
            request_timeout_ms=int(self.config.publish_timeout * 1000),
            **self.client_options(),
        )
        try:
            await asyncio.wait_for(producer.start(), self.config.publish_timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            await producer.stop()
            raise BusError(f"Kafka at {self.servers} is unreachable: {exc!r}") from exc
        self._producer = producer

    async def enqueue(self, topic: str, messages: Sequence[OutMessage]) -> Receipt:
        """Hand the batch to the producer's queue and return; the receipt completes once ``acks=all``
        came back for all of it (within ``publish_timeout``), or fails.

        The agent ships its next batch meanwhile: waiting for each batch's acks in turn held it to one
        batch a round trip (12,700-13,200 lines/s end to end on the mock cluster).
        """
        if self._producer is None:
            if self._closed:
                raise BusError("the Kafka bus is closed")
            await self.start()  # an agent started while Kafka was down: reach it now, or BusError (spool)
        producer = self._producer
        assert producer is not None  # start() set it or raised
        name = self.topic(topic)
        try:
            # Whole batches, in call order: a send that waits for room in the producer's queue must not
            # let another batch's records of the same key in between (per-key order).
            async with self._sending:
                futures = [
                    await producer.send(name, body, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
                    for body, key, headers in bodies(topic, messages, self.config.records_per_message,
                                                     self.config.pack_bytes)
                ]
        except KafkaError as exc:
            raise BusError(f"Kafka did not take the batch for {name}: {exc!r}") from exc
        return Receipt.after(self._acked(name, futures))

    async def _acked(self, name: str, futures: list[asyncio.Future[Any]]) -> Receipt:
        try:
            await asyncio.wait_for(asyncio.gather(*futures), self.config.publish_timeout)
        except (TimeoutError, KafkaError) as exc:
            raise BusError(f"Kafka did not confirm the batch for {name} (acks=all) within "
                           f"{self.config.publish_timeout:g}s: {exc!r}") from exc
        return DURABLE  # acks=all: the in-sync replicas hold it

    async def publish(self, topic: str, messages: Sequence[OutMessage]) -> Receipt:
        await (await self.enqueue(topic, messages))
        return DURABLE

    async def subscribe(self, topics: Sequence[str], group: str, writes_durably: bool = False) -> Consumer:
        consumer = KafkaConsumer(self, list(topics), group)
        await consumer.open()
        return consumer

    async def close(self) -> None:
        self._closed = True
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


class _Partition:
    """Offsets in flight on one partition, in fetch order: offset -> [epoch, acked]."""

    __slots__ = ("epoch", "inflight", "max_seen")

    def __init__(self) -> None:
        self.inflight: OrderedDict[int, list[Any]] = OrderedDict()
        self.epoch = 0
        self.max_seen = -1

    def committable(self) -> int | None:
        """The offset to commit: just past the longest acked prefix, or None if it did not move."""
        upto, done = None, 0
        for offset, entry in self.inflight.items():
            if not entry[1]:
                break
            upto, done = offset + 1, done + 1
        pop = self.inflight.popitem
        for _ in range(done):
            pop(last=False)
        return upto


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Acks commit as they come, so nothing is owed here: forgetting the
        # partition makes its in-flight deliveries stale; the new owner reads
        # them again from the committed offset.
        for tp in revoked:
            self.consumer._parts.pop(tp, None)
        if revoked:
            log.info("kafka %s: partitions revoked: %s", self.consumer.group, sorted(str(t) for t in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in assigned:
            self.consumer._parts[tp] = _Partition()
        if self.consumer._opened:
            BUS_RECONNECTIONS.labels(bus="kafka").inc()
        log.info("kafka %s: partitions assigned: %s", self.consumer.group, sorted(str(t) for t in assigned))


class KafkaConsumer(Consumer):
    def __init__(self, bus: KafkaBus, topics: list[str], group: str) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        self._by_name = {bus.topic(t): t for t in topics}
        #: It reads a topic whose records are packed (``bus.records_per_message``).
        self._packed = bus.config.records_per_message > 1 and any(t in PACKED_TOPICS for t in topics)
        self._rate = PackRate(bus.config.records_per_message)
        self._parts: dict[TopicPartition, _Partition] = {}
        self._closed = False
        self._opened = False
        self._lag_at = 0.0
        k = bus.config.kafka
        self._c = AIOKafkaConsumer(
            group_id=bus.topic(group),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(k.session_timeout * 1000),
            heartbeat_interval_ms=int(k.heartbeat_interval * 1000),
            max_poll_records=bus.config.prefetch,
            fetch_max_wait_ms=int(k.fetch_max_wait * 1000),
            **bus.client_options(),
        )

    async def open(self) -> None:
        """Join in the background: a group join can take a rebalance or two, and the
        daemon must come up (and report health) meanwhile; ``fetch`` waits for it."""
        self._c.subscribe(list(self._by_name), listener=_Rebalance(self))
        self._starting = asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        try:
            await self._c.start()
        except (KafkaError, OSError) as exc:
            await self._c.stop()
            raise BusError(f"could not join Kafka group {self.group}: {exc!r}") from exc
        self._opened = True

    async def _joined(self, timeout: float) -> bool:
        if not self._starting.done():
            await asyncio.wait([self._starting], timeout=timeout)
            if not self._starting.done():
                return False
        self._starting.result()  # raises BusError if the start failed
        return True

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Delivery]:
        if self._closed:
            raise BusError("consumer is closed")
        if not await self._joined(timeout):
            return []
        if self._packed:  # a Kafka record of a log topic holds many: ask for about ``max_records`` of ours
            max_records = self._rate.messages_for(max_records)
        batches = await self._c.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        out: list[Delivery] = []
        # Per record only what the delivery needs: this loop was most of what our consumer adds to
        # aiokafka's own (benchmarks/bus.py prints the ratio), so the partition's state is read once.
        for tp, records in batches.items():
            part = self._parts.get(tp)
            if part is None:
                part = self._parts[tp] = _Partition()
            topic = self._by_name.get(tp.topic, tp.topic)
            inflight, epoch, max_seen = part.inflight, part.epoch, part.max_seen
            for r in records:
                offset = r.offset
                inflight[offset] = [epoch, False]
                redelivered = offset <= max_seen
                if not redelivered:
                    if offset != max_seen + 1 and max_seen >= 0:
                        self._skipped(topic, max_seen, offset)
                    max_seen = offset
                # A record without a value (a tombstone anyone with access to the topic may produce) is
                # handed on as empty bytes: the stage dead-letters it with its reason like any bad record.
                value = r.value if r.value is not None else b""
                headers: dict[str, str] = {}
                if r.headers:
                    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in r.headers}  # a header may have no value
                    if headers.pop(PACK_HEADER, None) is not None:
                        unpacked_records = unpacked(topic, value, r.key, redelivered, (tp, offset, epoch))
                        if unpacked_records is not None:
                            self._rate.saw(len(unpacked_records))
                            out += unpacked_records
                            continue
                out.append(Delivery(topic, value, r.key, headers, redelivered, (tp, offset, epoch)))
            part.max_seen = max_seen
        await self._lag()
        return out

    def _skipped(self, topic: str, seen: int, offset: int) -> None:
        """A gap in a partition's offsets: our topics have no compaction and no transactions, so the records
        between were deleted (retention) before this group read them, and the client went on from the oldest
        one kept (``auto_offset_reset``). Lost, so said loudly and counted."""
        n = offset - seen - 1
        BUS_OFFSETS_SKIPPED.labels(topic=topic, group=self.group).inc(n)
        log.warning("kafka %s: %d records of %s (offsets %d-%d) were gone from the broker before this group read "
                    "them (retention shorter than this group's lag?); going on from offset %d",
                    self.group, n, topic, seen + 1, offset - 1, offset)

    async def _lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < LAG_EVERY:
            return
        self._lag_at = now
        for tp in self._c.assignment():
            high = self._c.highwater(tp)
            if high is None:
                continue
            try:
                pos = await self._c.position(tp)
            except KafkaError:
                continue
            BUS_CONSUMER_LAG.labels(topic=self._by_name.get(tp.topic, tp.topic), partition=str(tp.partition),
                                    group=self.group).set(max(0, high - pos))

    async def _commit(self, touched: set[TopicPartition]) -> None:
        offsets = {}
        for tp in touched:
            part = self._parts.get(tp)
            upto = part.committable() if part else None
            if upto is not None:
                offsets[tp] = upto
        if not offsets:
            return
        try:
            await self._c.commit(offsets)
        except KafkaError as exc:  # a rebalance took the partition: its new owner reads them again
            log.warning("kafka %s: commit failed (%r); those records will be delivered again", self.group, exc)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        touched: set[TopicPartition] = set()
        parts, last_tp, inflight = self._parts, None, None
        for d in deliveries:
            token = d.token
            if len(token) == 5 and not token[3].settle(token[4], False):
                continue  # more records of its Kafka record still in flight
            tp = token[0]
            if tp is not last_tp:  # a fetch's deliveries come partition by partition
                last_tp, part = tp, parts.get(tp)
                inflight = part.inflight if part is not None else None
            if inflight is None:
                continue
            entry = inflight.get(token[1])
            if entry is not None and entry[0] == token[2]:  # else stale: fetched before a seek or a rebalance
                entry[1] = True
                touched.add(tp)
        await self._commit(touched)

    async def nack(self, deliveries: Sequence[Delivery], requeue: bool = True) -> None:
        if not requeue:  # dead-lettered by the caller: as good as done
            await self.ack(deliveries)
            return
        lowest: dict[TopicPartition, int] = {}
        for d in deliveries:
            tp, offset, epoch = d.token[:3]  # a packed record: its Kafka record comes again whole
            part = self._parts.get(tp)
            if part is None or part.inflight.get(offset, [None])[0] != epoch:
                continue
            lowest[tp] = min(offset, lowest.get(tp, offset))
        for tp, offset in lowest.items():
            part = self._parts[tp]
            for o in [o for o in part.inflight if o >= offset]:
                del part.inflight[o]
            part.epoch += 1
            self._c.seek(tp, offset)
        await self._commit(set(lowest))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._parts.clear()
        if not self._starting.done():
            self._starting.cancel()
        await self._c.stop()  # leaves the group: uncommitted records go to the others
