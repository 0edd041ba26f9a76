"""The RabbitMQ bus (kombu / py-amqp).

Layout on the broker (``P`` is the topic prefix, ``telemetry.`` by default):

* one durable topic exchange ``P`` (without the trailing dot); a record of
  logical topic ``samples`` is published with routing key ``Psamples``;
* one durable queue per (topic, consumer group), ``Psamples.<group>``, bound
  with that routing key: groups fan out, consumers of one group compete;
* an alternate exchange ``P.unclaimed`` with a durable queue per topic,
  ``Psamples.unclaimed``: what is published before any group ever bound a
  queue waits there instead of being dropped by the broker, and every
  consumer drains it (as the memory bus keeps such messages for the first
  group).

The log topics (``raw_logs``, ``events``: thousands of small records a
second) are packed, ``bus.records_per_message`` records of one key to
a message (a msgpack list of the records' bytes, header ``x-telemetry-pack``),
because the broker's cost is per message (one record a message topped out
near 17,000 records/s). The consumer unpacks them into deliveries of their
own; the message is acked once all of its records are, and requeued whole if
any was given back (the others then come again, which the stores' ids make
harmless). Other topics, and records with headers (dead letters), go one to
a message, with per-record redelivery.

Messages are persistent; ``publish`` waits for the broker's publisher
confirms of the whole batch (one round trip per batch, not per message).
Consumers hold at most ``prefetch`` unacked messages and ack after the
stage's durable write; whatever is unacked when a channel goes away is
requeued by the broker itself.

kombu blocks, so each connection lives in a thread of its own (an
:class:`~telemetry.bus.amqp_link.AmqpLink`): the asyncio loop only awaits futures and never stalls,
and a connection is never touched by two threads. A lost broker is retried
with exponential backoff; a publish that cannot be confirmed before
``publish_timeout`` raises :class:`BusError` so the caller keeps its data.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import kombu

from telemetry.bus.amqp_link import AmqpLink, kombu_connection
from telemetry.bus.base import Bus, BusError, Consumer, DURABLE, Delivery, OutMessage, Receipt
from telemetry.bus.metrics import BUS_PUBLISH_RETRIES, BUS_QUEUE_DEPTH
from telemetry.bus.packing import PACK_HEADER, PACKED_TOPICS, bodies, unpacked
from telemetry.config.base import redact_url
from telemetry.config.core import BusConfig

log = logging.getLogger(__name__)

KEY_HEADER = "x-telemetry-key"
DEPTH_EVERY = 5.0  # seconds between passive queue declares for the depth gauge


class AmqpBus(Bus):
    def __init__(self, config: BusConfig) -> None:
        super().__init__(config.topic_prefix)
        self.config = config
        self.url = config.url
        base = config.topic_prefix.rstrip(".") or "telemetry"
        self.exchange = kombu.Exchange(base, type="topic", durable=True,
                                       arguments={"alternate-exchange": f"{base}.unclaimed"})
        self.unclaimed = kombu.Exchange(f"{base}.unclaimed", type="topic", durable=True)
        self._publisher = self.link("publish", self._on_publisher_channel)
        self._parked: set[tuple[int, str]] = set()
        self._lock = asyncio.Lock()
        self._pending: set[int] = set()
        self._low = 1
        self._nacked = False

    def describe(self) -> str:
        return redact_url(self.url)

    def connection(self) -> kombu.Connection:
        return kombu_connection(self.url, self.config.tls)

    def link(self, name: str, setup: Callable[[Any], None]) -> AmqpLink:
        return AmqpLink(name, self.connection, setup, self.describe(), self.config.reconnect_max_backoff)

    def queue(self, topic: str, group: str) -> kombu.Queue:
        name = self.topic(topic)
        return kombu.Queue(f"{name}.{group}", self.exchange, routing_key=name, durable=True, auto_delete=False)

    def parking(self, topic: str) -> kombu.Queue:
        name = self.topic(topic)
        return kombu.Queue(f"{name}.unclaimed", self.unclaimed, routing_key=name, durable=True, auto_delete=False)

    def _declare_exchanges(self, channel: Any) -> None:
        self.unclaimed(channel).declare()
        self.exchange(channel).declare()

    # -- publishing (publisher thread) ---------------------------------------------------------

    def _on_publisher_channel(self, channel: Any) -> None:
        self._declare_exchanges(channel)
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._pending, self._low, self._nacked = set(), 1, False
        self._seq = itertools.count(1)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            for t in range(self._low, delivery_tag + 1):
                self._pending.discard(t)
            self._low = max(self._low, delivery_tag + 1)
        else:
            self._pending.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True

    def _publish_once(self, topic: str, messages: Sequence[OutMessage], deadline: float) -> None:
        link = self._publisher
        channel = link.ensure(deadline)
        gen = link.generation
        if (gen, topic) not in self._parked:
            self.parking(topic)(channel).declare()
            self._parked.add((gen, topic))
        rk = self.topic(topic)
        for body, key, hdrs in bodies(topic, messages, self.config.records_per_message, self.config.pack_bytes):
            headers = dict(hdrs)
            if key is not None:
                headers[KEY_HEADER] = key.decode("latin-1")
            msg = channel.prepare_message(
                body, content_type="application/octet-stream", content_encoding="binary",
                headers=headers, properties={"delivery_mode": 2},
            )
            self._pending.add(next(self._seq))
            channel.basic_publish(msg, exchange=self.exchange.name, routing_key=rk)
        while self._pending and not self._nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the broker did not confirm the batch in time")
            try:
                assert link.conn is not None  # _publish_once connected it
                link.conn.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        if self._nacked:
            raise BusError("the broker refused (nacked) part of the batch")

    def _publish_sync(self, topic: str, messages: Sequence[OutMessage]) -> None:
        deadline = time.monotonic() + self.config.publish_timeout
        link = self._publisher
        while True:
            try:
                self._publish_once(topic, messages, deadline)
                return
            except (*link.errors, TimeoutError, BusError) as exc:  # type: ignore[misc]  # mypy reads no star-tuple
                link.drop()
                if time.monotonic() >= deadline:
                    raise BusError(f"publish to {self.describe()} failed: {exc}") from exc
                BUS_PUBLISH_RETRIES.labels(bus="amqp").inc()
                log.warning("amqp: batch of %d on %s not confirmed (%s); publishing it again", len(messages), topic, exc)

    async def publish(self, topic: str, messages: Sequence[OutMessage]) -> Receipt:
        if not messages:
            return DURABLE
        async with self._lock:
            await self._publisher.run(self._publish_sync, topic, messages)
        return DURABLE  # persistent messages the broker confirmed

    async def subscribe(self, topics: Sequence[str], group: str, writes_durably: bool = False) -> Consumer:
        consumer = AmqpConsumer(self, list(topics), group)
        await consumer.open()
        return consumer

    async def start(self) -> None:
        """One attempt to reach the broker; BusError (URL masked, one line) when it fails.

        The caller decides whether to retry (the server) or to go on with the
        bus down (the agent, whose publishes then fail and spool): this
        method never blocks for longer than one connection attempt.
        """
        await self._publisher.run(self._publisher.ensure, time.monotonic())

    async def close(self) -> None:
        await self._publisher.run(self._publisher.close)
        self._publisher.shutdown()


class AmqpConsumer(Consumer):
    #: Measured: with stages fetching again to fill short batches, agent -> RabbitMQ -> server fell
    #: from 1,362 to 600-660 lines/s. A fetch waits on the consumer's link thread, which its acks
    #: also need, and the broker sends nothing past the prefetch window until acks come: waiting
    #: there delays the acks that would let more messages in.
    refetch_to_fill = False

    def __init__(self, bus: AmqpBus, topics: list[str], group: str) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        self._link = bus.link(f"consume-{group}", self._on_channel)
        self._buffer: deque[Delivery] = deque()
        self._closed = False
        self._by_rk = {bus.topic(t): t for t in topics}
        self._depth_at = 0.0

    def _on_channel(self, channel: Any) -> None:
        self.bus._declare_exchanges(channel)
        channel.basic_qos(0, self._prefetch(), False)
        self._buffer.clear()  # deliveries of a dead channel come back from the broker
        for t in self.topics:
            for q in (self.bus.queue(t, self.group), self.bus.parking(t)):
                bound = q(channel)
                bound.declare()
                channel.basic_consume(queue=q.name, callback=self._on_message, no_ack=False)

    def _prefetch(self) -> int:
        """Messages the broker may send ahead: ``prefetch`` counts records, and a pack holds many
        (20 times ``prefetch`` records when they are full, so a pack-reading stage keeps several
        batches coming). Never fewer than a fifth of ``prefetch`` messages: packs are one key's run,
        a dozen records each when a thousand agents each send a little, and a window of twenty such
        would hold a stage to a few hundred records a round trip. (RabbitMQ applies a consumer's
        limit as it was when the consumer began, so it cannot follow the packs' sizes as Kafka's
        fetch does, ``PackRate``.) At most that many messages of ``pack_bytes`` each are held."""
        cfg = self.bus.config
        per = cfg.records_per_message
        if per > 1 and any(t in PACKED_TOPICS for t in self.topics):
            return max(10, cfg.prefetch // 5, cfg.prefetch * 20 // per)
        return cfg.prefetch

    def _on_message(self, message: Any) -> None:
        info = message.delivery_info
        headers = dict(message.properties.get("application_headers") or {})
        key = headers.pop(KEY_HEADER, None)
        topic = self._by_rk.get(info["routing_key"], info["routing_key"])
        key_bytes = key.encode("latin-1") if isinstance(key, str) else None
        redelivered = bool(info.get("redelivered"))
        gen, tag = self._link.generation, info["delivery_tag"]
        if headers.pop(PACK_HEADER, None) is not None:
            records = unpacked(topic, bytes(message.body), key_bytes, redelivered, (gen, tag))
            if records is not None:
                self._buffer.extend(records)
                return
        self._buffer.append(Delivery(
            topic=topic, value=bytes(message.body), key=key_bytes,
            headers={str(k): str(v) for k, v in headers.items()}, redelivered=redelivered, token=(gen, tag),
        ))

    async def open(self) -> None:
        await self._link.run(self._link.ensure, time.monotonic() + self.bus.config.publish_timeout)

    def _fetch_sync(self, max_records: int, timeout: float) -> list[Delivery]:
        link = self._link
        if not link.drain(self._buffer, max_records, timeout):
            return []
        try:
            self._depth(link.channel)
        except link.errors as exc:
            log.warning("amqp consumer %s: lost the broker (%s); reconnecting", self.group, exc)
            link.drop()
            self._buffer.clear()
            return []
        out: list[Delivery] = []
        while self._buffer and len(out) < max_records:
            out.append(self._buffer.popleft())
        return out

    def _depth(self, channel: Any) -> None:
        now = time.monotonic()
        if now - self._depth_at < DEPTH_EVERY:
            return
        self._depth_at = now
        for t in self.topics:
            q = self.bus.queue(t, self.group)
            _, ready, _ = channel.queue_declare(queue=q.name, passive=True)
            BUS_QUEUE_DEPTH.labels(topic=t, group=self.group).set(ready)

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Delivery]:
        if self._closed:
            raise BusError("consumer is closed")
        return await self._link.run(self._fetch_sync, max_records, timeout)

    def _settle(self, deliveries: Sequence[Delivery], requeue: bool | None) -> None:
        """Ack (``requeue`` None) or reject them; a pack's message goes once all its records went."""
        done: list[tuple[int, int]] = []
        packs: list[tuple[int, int]] = []
        again: list[tuple[int, int]] = []
        for d in deliveries:
            token = d.token
            if len(token) == 2:
                done.append(token)
                continue
            gen, tag, pack, i = token
            if pack.settle(i, bool(requeue)):
                (again if pack.requeue else packs).append((gen, tag))
        link = self._link
        if done:
            link.settle(done, (lambda ch, tag: ch.basic_ack(tag)) if requeue is None
                        else (lambda ch, tag: ch.basic_reject(tag, requeue=requeue)))
        if packs:
            link.settle(packs, lambda ch, tag: ch.basic_ack(tag))
        if again:
            link.settle(again, lambda ch, tag: ch.basic_reject(tag, requeue=True))

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await self._link.run(self._settle, deliveries, None)

    async def nack(self, deliveries: Sequence[Delivery], requeue: bool = True) -> None:
        if deliveries:
            await self._link.run(self._settle, deliveries, requeue)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._link.run(self._link.close)
        self._link.shutdown()
