"""The bus contract every broker implementation keeps.

``publish`` returns only once the broker holds the batch (publisher confirm,
``acks=all``, or the in-memory queue). It returns a :class:`Receipt` that
completes once the batch is *durable*: at once for RabbitMQ and Kafka, whose
disks hold it; for the in-memory bus, once every consumer group acknowledged
every message, that is once each consumer's own write is durable. Whoever
acknowledges upstream (an agent advancing its file checkpoint, a stage
acking its input, a listener acking RabbitMQ, an HTTP input answering 2xx)
awaits the receipt first, so the all-in-one loses nothing acknowledged to a
kill -9, exactly as a split deployment. A consumer acknowledges deliveries
explicitly, after its own write is durable; anything not acknowledged when
the consumer goes away is delivered again. Stores dedup on record ids, so
that redelivery never double-counts.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Generator, Iterable, Sequence
from typing import Any

from telemetry.bus.messages import NO_HEADERS, Delivery, OutMessage, encode_object

__all__ = ["DURABLE", "NO_HEADERS", "Bus", "BusClosed", "BusError", "Consumer", "Delivery", "OutMessage", "Receipt",
           "all_durable", "encode_object"]


class Receipt:
    """Completes once the messages of one ``publish`` are durable downstream (see the module's text).

    Awaiting it raises BusError when the bus closed before that happened.
    """

    __slots__ = ("_follow", "_future", "_left")

    def __init__(self, pending: int = 0) -> None:
        self._left = pending
        self._future: asyncio.Future[None] | None = None
        self._follow: asyncio.Future[None] | None = None
        if pending:
            self._future = asyncio.get_running_loop().create_future()

    @classmethod
    def after(cls, publishing: Awaitable[Receipt]) -> Receipt:
        """The receipt of a ``publish`` still under way: done once the bus took the batch and it is
        durable; a publish that fails fails it (BusError), so whoever waits acks nothing.

        A publisher that need not wait for the broker's confirm before its next batch (the parse
        stage, whose input is acked only through its receipts) gives this instead of awaiting.
        """
        receipt = cls(1)

        async def follow() -> None:
            try:
                await (await publishing)
            except BaseException as exc:
                receipt._fail(exc if isinstance(exc, BusError) else BusError(f"publish failed: {exc!r}"))
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                receipt.settle()

        receipt._follow = asyncio.ensure_future(follow())  # referenced: a task nobody holds may be collected
        return receipt

    def _fail(self, exc: BusError) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_exception(exc)
            self._future.exception()  # retrieved here, so an unawaited receipt logs nothing

    @property
    def done(self) -> bool:
        return self._left <= 0

    def settle(self, n: int = 1) -> None:
        """``n`` more deliveries were acknowledged."""
        self._left -= n
        if self._left <= 0 and self._future is not None and not self._future.done():
            self._future.set_result(None)

    def abandon(self) -> None:
        """The bus closed: whoever waits learns the batch was not taken."""
        self._fail(BusClosed("the bus closed before the batch was durable downstream"))

    def __await__(self) -> Generator[Any, None, None]:
        if self._future is None:
            return
        yield from asyncio.shield(self._future).__await__()


#: The receipt of a broker whose own disks make a published batch durable.
DURABLE = Receipt()


async def all_durable(receipts: Iterable[Receipt]) -> None:
    """Wait for every receipt (the dead letters and the output of one batch, say)."""
    for r in receipts:
        await r


class BusError(Exception):
    """The bus could not take or give messages (broker down, closed, ...)."""


class BusClosed(BusError):
    """A receipt's bus closed before the batch was durable: the process is stopping, nothing to retry."""


class Consumer(abc.ABC):
    """Reads from one or more topics as a member of a consumer group."""

    #: Whether a stage may fetch again for a few milliseconds to fill a short batch
    #: (``BusStage.batch_delay``). False where waiting in ``fetch`` holds up other work.
    refetch_to_fill: bool = True

    @abc.abstractmethod
    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Delivery]:
        """Up to ``max_records`` deliveries; waits up to ``timeout`` s for the first."""

    @abc.abstractmethod
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """The consumer's write of these is durable: never deliver them again."""

    @abc.abstractmethod
    async def nack(self, deliveries: Sequence[Delivery], requeue: bool = True) -> None:
        """Give these back (``requeue``) or drop them (after dead-lettering them)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the group; unacked deliveries go back to the topic."""


class Bus(abc.ABC):
    """A broker connection: publish batches, open consumers."""

    #: Records may travel as objects (``OutMessage.record``): the bus lives in this process.
    in_process: bool = False

    def __init__(self, topic_prefix: str = "") -> None:
        self.topic_prefix = topic_prefix

    def topic(self, name: str) -> str:
        """The broker-side name of a logical topic (``samples`` -> ``telemetry.samples``)."""
        return f"{self.topic_prefix}{name}"

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and disconnect."""

    @abc.abstractmethod
    async def publish(self, topic: str, messages: Sequence[OutMessage]) -> Receipt:
        """Return once the broker holds every message; raise BusError otherwise.

        The receipt completes once they are durable (see the module's text).
        """

    async def enqueue(self, topic: str, messages: Sequence[OutMessage]) -> Receipt:
        """``publish`` for a publisher with several batches under way (the agent's shipper): return once
        the batch is queued to go, after every batch enqueued before it, and leave the broker's answer to
        the receipt, which fails with BusError when the broker never took the batch.

        Here a ``publish`` (the broker holds the batch when it returns); a bus whose client queues
        sends and confirms them later (Kafka) returns earlier.
        """
        return await self.publish(topic, messages)

    async def publish_objects(self, topic: str, records: Sequence[Any], keys: Sequence[bytes | None]) -> Receipt:
        """``publish`` of records as they are, each with its key: for a bus in this process
        (``in_process``), a message holding the record itself (``OutMessage.record``). The memory
        bus builds its deliveries of them directly."""
        return await self.publish(topic, [OutMessage(b"", k, NO_HEADERS, r) for r, k in zip(records, keys)])

    @abc.abstractmethod
    async def subscribe(self, topics: Sequence[str], group: str, writes_durably: bool = False) -> Consumer:
        """A consumer in ``group`` over ``topics`` (logical names).

        ``writes_durably``: the group acknowledges only after its own durable
        write (every stage does), so receipts of the in-memory bus wait for it;
        an observer (a test, a live tail) does not hold publishers back.
        """

    def describe(self) -> str:
        return type(self).__name__
