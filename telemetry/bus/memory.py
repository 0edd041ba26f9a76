"""The in-process bus of the all-in-one daemon.

It keeps the semantics of a real broker so stages behave the same in
all-in-one and in a split deployment: each consumer group gets every message
of a topic (as Kafka consumer groups do), consumers of one group share the
work, an unacked delivery returns to the head of its queue when nacked or
when its consumer closes, and a full queue makes ``publish`` wait
(backpressure) rather than drop.

Messages published before any group subscribed are kept for the first group,
as a durable queue would keep them: the newest ``max_queued`` of them, counted
when older ones go, so a topic nobody reads never blocks its publishers.

Nothing here survives the process, so a publish is durable only once the
consumers downstream made it so: the receipt ``publish`` returns completes
when every group that received the batch acknowledged every message of it
(each consumer acks after its own durable write). Acknowledgement is thus
carried end to end through the all-in-one's stages, and a kill -9 loses
nothing that anyone upstream acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from itertools import repeat
from operator import attrgetter, is_
from typing import Any

from telemetry.bus.base import NO_HEADERS, Bus, BusError, Consumer, Delivery, OutMessage, Receipt
from telemetry.metrics import BUS_UNCLAIMED_DROPPED


class _Token:
    """A published batch's topic and place in publish order, the receipt its deliveries' acknowledgements
    settle, and what its publisher packed of it (``MemoryBus.publish``): the bytes and the records they
    encode, in order."""

    __slots__ = ("packed", "receipt", "seq", "topic")

    def __init__(self, seq: int, receipt: Receipt, packed: tuple[bytes, list[Any]] | None = None,
                 topic: str = "") -> None:
        self.seq = seq
        self.receipt = receipt
        self.packed = packed
        self.topic = topic


_TOKEN = attrgetter("token")
_RECORD = attrgetter("record")


def packed_batches(deliveries: Sequence[Delivery]) -> tuple[list[Delivery], list[tuple[bytes, list[Delivery]]]]:
    """The published batches whose every delivery is here, in publish order, each with its packed bytes
    (``MemoryBus.publish``'s ``packed``); and the other deliveries, as they came.

    For a consumer that hands whole batches to another process (the event store's writer): it sends the
    bytes the publisher made instead of encoding each record again. A batch split by a fetch, or given
    back in part, is not whole here: its deliveries are among the others.
    """
    rest: list[Delivery] = []
    whole: list[tuple[bytes, list[Delivery]]] = []
    for token, run in itertools.groupby(deliveries, _TOKEN):
        ds = list(run)
        packed = token.packed if token.__class__ is _Token else None
        if packed is not None:
            blob, records = packed
            # The same records in the same order, by identity: the bytes then encode exactly these deliveries.
            if len(ds) == len(records) and all(map(is_, map(_RECORD, ds), records)):
                whole.append((blob, ds))
                continue
        rest += ds
    return rest, whole


class _Queue:
    """One (topic, group) queue."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        #: Its group acks after a durable write: receipts count its acks, of messages published
        #: since it does (``durable_from``, a publish sequence number).
        self.writes_durably = False
        self.durable_from = 0
        self.items: deque[Delivery] = deque()
        self.readable = asyncio.Event()

    def counts(self, token: _Token) -> bool:
        """Whether this group's acknowledgement of the delivery settles its receipt."""
        return self.writes_durably and token.seq >= self.durable_from

    def put(self, d: Delivery) -> None:
        self.items.append(d)
        self.readable.set()

    def put_back(self, ds: Sequence[Delivery]) -> None:
        for d in reversed(ds):
            # A copy: the other groups' queues hold the same delivery, and theirs was not given back.
            self.items.appendleft(Delivery(d.topic, d._value, d.key, d.headers, True, d.token, d.record))
        if self.items:
            self.readable.set()


class MemoryBus(Bus):
    in_process = True

    def __init__(self, topic_prefix: str = "", max_queued: int = 100_000) -> None:
        super().__init__(topic_prefix)
        self.max_queued = max_queued
        self._groups: dict[str, dict[str, _Queue]] = {}  # topic -> group -> queue
        self._orphans: dict[str, _Queue] = {}  # topic -> messages no group has seen yet
        self._space = asyncio.Condition()
        self._closed = False
        self._seq = itertools.count()
        #: Receipts not yet complete, abandoned (they raise) if the bus closes first.
        self._open: set[Receipt] = set()

    def describe(self) -> str:
        return "memory:// (in-process)"

    def _queues(self, topic: str) -> list[_Queue]:
        groups = self._groups.get(topic)
        if groups:
            return list(groups.values())
        return [self._orphans.setdefault(topic, _Queue(topic))]

    def depth(self, topic: str, group: str | None = None) -> int:
        """Messages waiting (not in flight) for ``group``, or the deepest group."""
        topic = self.topic(topic)
        if group is not None:
            q = self._groups.get(topic, {}).get(group)
            return len(q.items) if q else len(self._orphans.get(topic, _Queue(topic)).items)
        return max((len(q.items) for q in self._queues(topic)), default=0)

    async def publish(self, topic: str, messages: Sequence[OutMessage], packed: bytes | None = None) -> Receipt:
        """As ``Bus.publish``; ``packed``, when the publisher has it, is the messages' records encoded as one
        batch for another process (the parse workers' marshalled events), kept for ``packed_batches``."""
        return await self._put(topic, len(messages), lambda token: [
            Delivery(topic, m.value, m.key, m.headers, False, token, m.record) for m in messages],
            None if packed is None else (packed, [m.record for m in messages]))

    async def publish_objects(self, topic: str, records: Sequence[Any], keys: Sequence[bytes | None],
                              packed: bytes | None = None) -> Receipt:
        """``Bus.publish_objects`` with a delivery each and no message object: the agent's raw logs and the
        parse stage's events, two of each log line's objects (0.66 µs a record with the message, 0.27
        without); ``packed`` as for ``publish``."""
        deliver = partial(Delivery, topic, b"")
        return await self._put(topic, len(records), lambda token: list(
            map(deliver, keys, repeat(NO_HEADERS), repeat(False), repeat(token), records)),
            None if packed is None else (packed, list(records)))

    async def _put(self, topic: str, n: int, deliveries: Callable[[_Token], list[Delivery]],
                   packed: tuple[bytes, list[Any]] | None) -> Receipt:
        """One batch of ``n`` messages into every group's queue, as ``deliveries`` builds them for its token."""
        if self._closed:
            raise BusError("the memory bus is closed")
        name = self.topic(topic)
        async with self._space:
            # Backpressure comes from consumer groups only. A topic nobody has subscribed to
            # (the dead-letter topic, when no one inspects it) keeps its newest ``max_queued``
            # messages for a late first group instead of blocking the stages that publish there.
            await self._space.wait_for(
                lambda: self._closed or all(len(q.items) < self.max_queued for q in self._groups.get(name, {}).values())
            )
            if self._closed:
                raise BusError("the memory bus is closed")
            # One lookup and one wake-up per call, not per message: publish is on every hot path.
            queues, seq = self._queues(name), self._seq
            # Messages kept for a group that has not subscribed yet have no one to make them durable,
            # and an observing group's acks make nothing durable: neither counts.
            writers = sum(1 for q in queues if q.writes_durably)
            receipt = Receipt(n * writers)
            if not receipt.done:
                self._open.add(receipt)
            # A message's headers are shared by its deliveries, not copied for each: nothing changes
            # a message once published (OutMessage), and consumers only read them.
            # One delivery per message, shared by every group's queue: consumers only read it, an
            # acknowledgement settles the receipt only from a group that writes durably (the
            # consumer knows its queue), and a delivery given back is requeued as a copy.
            # One token for the batch: its deliveries share their place in publish order and their receipt.
            batch = deliveries(_Token(next(seq), receipt, packed, topic))
            for q in queues:
                q.items.extend(batch)
            orphans = self._orphans.get(name)
            if orphans is not None and len(orphans.items) > self.max_queued:
                dropped = len(orphans.items) - self.max_queued
                for _ in range(dropped):
                    orphans.items.popleft()
                BUS_UNCLAIMED_DROPPED.labels(topic=topic).inc(dropped)
            for q in queues:
                if q.items:
                    q.readable.set()
        return receipt

    def _settled(self, tokens: Mapping[_Token, int]) -> None:
        """``n`` more acknowledgements of each token's batch that count (``_Queue.counts``)."""
        # Settled per batch, not per delivery: a fetch's deliveries mostly share one or two.
        for token, n in tokens.items():
            r = token.receipt
            if not r.done:
                r.settle(n)
                if r.done:
                    self._open.discard(r)

    async def subscribe(self, topics: Sequence[str], group: str, writes_durably: bool = False) -> Consumer:
        queues = []
        for t in topics:
            name = self.topic(t)
            groups = self._groups.setdefault(name, {})
            if group not in groups:
                q = self._orphans.pop(name, None) if not groups else None
                groups[group] = q or _Queue(name)
            queue = groups[group]
            if writes_durably and not queue.writes_durably:
                queue.writes_durably, queue.durable_from = True, next(self._seq)
            queues.append(queue)
        return MemoryConsumer(self, dict(zip(topics, queues)))

    async def _freed(self) -> None:
        async with self._space:
            self._space.notify_all()

    async def close(self) -> None:
        self._closed = True
        for r in self._open:
            r.abandon()
        self._open.clear()
        await self._freed()


class MemoryConsumer(Consumer):
    def __init__(self, bus: MemoryBus, queues: dict[str, _Queue]) -> None:
        self._bus = bus
        #: The group's queue of each topic it reads: a delivery's own (its ``topic``) when it is acked,
        #: given back or left unacknowledged, so the deliveries in flight are kept without it.
        self._queue_of = queues
        self._queues = list(queues.values())
        self._durable = any(q.writes_durably for q in self._queues)
        self._inflight: dict[int, Delivery] = {}
        self._closed = False

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Delivery]:
        if self._closed:
            raise BusError("consumer is closed")
        out = self._take(max_records)
        if not out and timeout > 0:
            waiters = [asyncio.ensure_future(q.readable.wait()) for q in self._queues]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            out = self._take(max_records)
        if out:
            await self._bus._freed()
        return out

    def _take(self, max_records: int) -> list[Delivery]:
        out: list[Delivery] = []
        inflight = self._inflight
        for q in self._queues:
            items = q.items
            n = min(len(items), max_records - len(out))
            if n > 0:
                if n == len(items):  # the usual case: the whole queue
                    taken = list(items)
                    items.clear()
                else:
                    popleft = items.popleft
                    taken = [popleft() for _ in range(n)]
                inflight.update(zip(map(id, taken), taken))
                out += taken
            if not items:
                q.readable.clear()
        return out

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        taken = list(map(self._inflight.pop, map(id, deliveries), repeat(None)))
        if not self._durable:  # an observer: its acks settle nothing
            return
        if None in taken:  # some were not in flight here (acked twice, or given back meanwhile)
            deliveries = [d for d, t in zip(deliveries, taken) if t is not None]
        self._bus._settled(self._counting(Counter(map(_TOKEN, deliveries))))

    def _counting(self, tokens: Mapping[_Token, int]) -> dict[_Token, int]:
        """The tokens whose acknowledgements from this group settle their receipts (``_Queue.counts``)."""
        queue_of = self._queue_of
        return {t: n for t, n in tokens.items() if queue_of[t.topic].counts(t)}

    async def nack(self, deliveries: Sequence[Delivery], requeue: bool = True) -> None:
        by_queue: dict[int, tuple[_Queue, list[Delivery]]] = {}
        dropped: Counter[_Token] = Counter()
        for d in deliveries:
            if self._inflight.pop(id(d), None) is None:
                continue
            if requeue:
                q = self._queue_of[d.topic]
                by_queue.setdefault(id(q), (q, []))[1].append(d)
            else:
                dropped[d.token] += 1  # the consumer dead-lettered it: its fate is settled
        self._bus._settled(self._counting(dropped))
        for q, ds in by_queue.values():
            q.put_back(ds)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pending = list(self._inflight.values())
        self._inflight.clear()
        by_queue: dict[int, tuple[_Queue, list[Delivery]]] = {}
        for d in pending:
            q = self._queue_of[d.topic]
            by_queue.setdefault(id(q), (q, []))[1].append(d)
        for q, ds in by_queue.values():
            ds.sort(key=lambda d: d.token.seq)
            q.put_back(ds)
