"""Shipping batches: to the bus, or to the spool while the bus is away.

One task ships batches strictly in order. While the spool holds anything,
new batches queue behind it, so per-file order survives an outage. A publish
that raises ``BusError`` (or ``OSError``) or outlasts ``publish_timeout``
counts as the bus being down. Checkpoints advance only once a published batch
is durable: its receipt completed (at once for RabbitMQ and the output file;
on Kafka once ``acks=all`` came back; on the in-memory bus of the all-in-one,
once the stages downstream wrote it), in publish order, by a second task, so up
to ``IN_FLIGHT`` batches are under way while the oldest is confirmed. A batch
whose receipt fails (Kafka never confirmed it) goes to the spool, behind what
is there, and the bus counts as down; while it is down each batch is shipped
only once the one before was confirmed.

Targets: the bus (the ``raw_logs`` topic), or an fsynced JSON-lines file
(``sources.agent.output_file``, Filebeat's ``output.file``) for nodes with no
bus and for tests that need a downstream outliving the agent process.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import msgpack
import orjson

from telemetry.bus import DURABLE, NO_HEADERS, Bus, BusClosed, BusError, OutMessage, Receipt
from telemetry.collect import agent_metrics as m
from telemetry.collect.batcher import Batch, Batcher, Value
from telemetry.collect.checkpoints import Checkpoints
from telemetry.collect.spool import Spool
from telemetry.metrics import BUS_PUBLISHED
from telemetry.models import RawLog

log = logging.getLogger(__name__)

__all__ = ["BusTarget", "FileTarget", "Shipper", "Target"]


#: Batches published and not yet durable downstream, at most (then shipping waits for the oldest).
IN_FLIGHT = 64


class Target(Protocol):
    async def ship(self, batch: Batch) -> Receipt:
        """Return once the target holds the batch, with the receipt of its durability; raise BusError."""


def messages(values: Sequence[Value], keys: list[bytes]) -> list[OutMessage]:
    """One message per record: its bytes, or (a bus in this process) the RawLog itself."""
    headers = NO_HEADERS
    return [OutMessage(v, k, headers) if v.__class__ is bytes else OutMessage(b"", k, headers, v)
            for v, k in zip(values, keys)]


class BusTarget:
    """The ``raw_logs`` topic, one message a record: handed over as objects on a bus in this process."""

    def __init__(self, bus: Bus, fmt: str = "json") -> None:
        self.bus, self.fmt = bus, fmt

    async def ship(self, batch: Batch) -> Receipt:
        if self.bus.in_process and not any(v.__class__ is bytes for v in batch.values):
            receipt = await self.bus.publish_objects(RawLog.topic, batch.values, batch.keys)  # the RawLogs themselves
            BUS_PUBLISHED.labels(topic=RawLog.topic).inc(len(batch.values))
            return receipt
        values: Sequence[Value] = batch.values if self.bus.in_process else batch.encoded()
        if self.fmt == "msgpack":  # the agent encodes JSON; a msgpack bus gets the same dicts packed
            values = [msgpack.packb(orjson.loads(v), use_bin_type=True) if v.__class__ is bytes else v
                      for v in values]
        receipt = await self.bus.enqueue(RawLog.topic, messages(values, batch.keys))
        BUS_PUBLISHED.labels(topic=RawLog.topic).inc(len(values))
        return receipt


class FileTarget:
    """Appends one JSON record a line and fsyncs before returning."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _write(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            size = os.fstat(fd).st_size
            # A write cut by a crash left a partial line: end it so the next record stays whole.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    async def ship(self, batch: Batch) -> Receipt:
        data = b"\n".join(batch.encoded()) + b"\n"
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise BusError(f"cannot write {self.path}: {exc}") from exc
        return DURABLE  # fsynced


class Shipper:
    def __init__(
        self, target: Target, batcher: Batcher, spool: Spool, checkpoints: Checkpoints, timeout: float,
        on_ack: Callable[[Batch], None] | None = None,
    ) -> None:
        self.target = target
        self.batcher = batcher
        self.spool = spool
        self.checkpoints = checkpoints
        self.timeout = timeout
        self.on_ack = on_ack
        self.down = False
        self.backoff = 0.2
        self.shipped = 0
        #: Published batches waiting for their receipts, oldest first.
        self.inflight: deque[tuple[Batch, Receipt, str]] = deque()
        self._more = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        #: Nothing in flight.
        self._idle = asyncio.Event()
        self._idle.set()
        m.SPOOL_BATCHES.set(len(spool))
        m.SPOOL_BYTES.set(spool.bytes)

    async def _send(self, batch: Batch, via: str) -> bool:
        """Ship ``batch``; False when it must go (or stay) in the spool."""
        if self.down:
            # Order: what is under way is confirmed or spooled first, and a new batch queues behind the spool.
            await self._idle.wait()
            if via == "direct" and len(self.spool):
                return False
        try:
            receipt = await asyncio.wait_for(self.target.ship(batch), self.timeout)
            if self.down:  # probing a bus that was away: it is back once it took a batch whole
                await asyncio.wait_for(receipt, self.timeout)
        except (TimeoutError, BusError, OSError) as exc:
            self._failed(exc)
            await self._idle.wait()  # the batches under way go to the spool (or through) before this one
            return False
        if self.down:
            log.info("bus is back; draining %d spooled batches", len(self.spool))
        self.down, self.backoff = False, 0.2
        if receipt.done and not self.inflight:  # durable already (a broker, the file): no hand-over
            await self._acked(batch, via)
            return True
        self.inflight.append((batch, receipt, via))
        self._more.set()
        self._idle.clear()
        if len(self.inflight) >= IN_FLIGHT:
            self._room.clear()
            await self._room.wait()
        return True

    async def settle(self) -> None:
        """Advance the checkpoints of published batches as they become durable, in publish order."""
        while True:
            if not self.inflight:
                self._idle.set()
                self._more.clear()
                await self._more.wait()
                continue
            batch, receipt, via = self.inflight[0]
            try:
                await receipt
            except BusClosed as exc:  # stopping: read again after a restart, never lost
                log.warning("%d published batches not written downstream (%s); their lines are read again "
                            "after a restart", len(self.inflight), exc)
                self.inflight.clear()
                self._room.set()
                continue
            except BusError as exc:  # the broker never took it: to the spool, shipped again from there
                self.inflight.popleft()
                self._failed(exc)
                await self._spool(batch, wait=False)  # read already: a full spool holds back reading, not this
            else:
                self.inflight.popleft()
                await self._acked(batch, via)
            if len(self.inflight) < IN_FLIGHT:
                self._room.set()

    def _failed(self, exc: BaseException) -> None:
        m.SHIP_FAILURES.inc()
        if not self.down:
            log.warning("bus unavailable (%s: %s); spooling to %s", type(exc).__name__, exc, self.spool.folder)
        self.down = True

    async def _acked(self, batch: Batch, via: str) -> None:
        for key, mark in batch.marks.items():
            if mark.cursor is not None:
                self.checkpoints.advance_cursor(key, mark.cursor)
            else:
                self.checkpoints.advance(key, mark.end, mark.inode, mark.dev, mark.path, mark.skips)
        if self.checkpoints.sync_due():
            await asyncio.to_thread(self.checkpoints.save)  # fsync: off the event loop
        else:
            self.checkpoints.save()  # one pwrite: cheaper here than a thread hop per batch
        self.shipped += len(batch)
        m.BATCHES_SHIPPED.labels(via=via).inc()
        m.RECORDS_SHIPPED.inc(len(batch))
        if self.on_ack:
            self.on_ack(batch)

    async def _spool(self, batch: Batch, wait: bool = True) -> None:
        await self.spool.append(batch, wait)
        m.SPOOL_BATCHES.set(len(self.spool))
        m.SPOOL_BYTES.set(self.spool.bytes)

    async def _drain_one(self) -> None:
        item = self.spool.head()
        if item is None:
            return
        path, batch = item
        if await self._send(batch, "spool"):
            self.spool.pop(path)
            m.SPOOL_BATCHES.set(len(self.spool))
            m.SPOOL_BYTES.set(self.spool.bytes)
            return
        # Down: wait before retrying, meanwhile new batches queue behind the spooled ones.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.backoff
        self.backoff = min(self.backoff * 2, 5.0)
        while (left := deadline - loop.time()) > 0:
            if self.spool.full():
                await asyncio.sleep(left)  # backpressure: the readers wait on the batcher
                break
            try:
                nxt = await asyncio.wait_for(self.batcher.out.get(), left)
            except TimeoutError:
                break
            await self._spool(nxt)

    async def run(self) -> None:
        while True:
            if len(self.spool):
                await self._drain_one()
                continue
            batch = await self.batcher.out.get()
            if not await self._send(batch, "direct"):
                # Past a full spool: this loop is what drains it (and, while the bus is down, it takes
                # no new batch once the spool is full).
                await self._spool(batch, wait=False)
