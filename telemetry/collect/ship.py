"""Shipping batches: to the bus, or to the spool while the bus is away.

One task ships batches strictly in order. While the spool holds anything,
new batches queue behind it, so per-file order survives an outage. A publish
that raises ``BusError`` (or ``OSError``) or outlasts ``publish_timeout``
counts as the bus being down. Checkpoints advance only after a publish
returned, for the batch just published.

Targets: the bus (``publish_records``), or an fsynced JSON-lines file
(``sources.agent.output_file``, Filebeat's ``output.file``) for nodes with no
bus and for tests that need a downstream outliving the agent process.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import Protocol

from telemetry.bus import Bus, BusError
from telemetry.bus.records import publish_records
from telemetry.collect import agent_metrics as m
from telemetry.collect.batcher import Batch, Batcher
from telemetry.collect.checkpoints import Checkpoints
from telemetry.collect.spool import Spool
from telemetry.models import RawLog

log = logging.getLogger(__name__)

__all__ = ["BusTarget", "FileTarget", "Shipper", "Target"]


class Target(Protocol):
    async def ship(self, records: Sequence[RawLog]) -> None:
        """Return once the records are durable downstream; raise BusError otherwise."""


class BusTarget:
    def __init__(self, bus: Bus, fmt: str = "json") -> None:
        self.bus, self.fmt = bus, fmt

    async def ship(self, records: Sequence[RawLog]) -> None:
        await publish_records(self.bus, records, self.fmt)


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

    async def ship(self, records: Sequence[RawLog]) -> None:
        data = b"".join(r.to_json() + b"\n" for r in records)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise BusError(f"cannot write {self.path}: {exc}") from exc


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
        m.SPOOL_BATCHES.set(len(spool))
        m.SPOOL_BYTES.set(spool.bytes)

    async def _send(self, batch: Batch, via: str) -> bool:
        try:
            await asyncio.wait_for(self.target.ship(batch.records), self.timeout)
        except (TimeoutError, BusError, OSError) as exc:
            m.SHIP_FAILURES.inc()
            if not self.down:
                log.warning("bus unavailable (%s: %s); spooling to %s", type(exc).__name__, exc, self.spool.folder)
            self.down = True
            return False
        if self.down:
            log.info("bus is back; draining %d spooled batches", len(self.spool))
        self.down, self.backoff = False, 0.2
        for fp, mark in batch.marks.items():
            self.checkpoints.advance(fp, mark.end, mark.inode, mark.dev, mark.path)
        await asyncio.to_thread(self.checkpoints.save)
        self.shipped += len(batch.records)
        m.BATCHES_SHIPPED.labels(via=via).inc()
        m.RECORDS_SHIPPED.inc(len(batch.records))
        if self.on_ack:
            self.on_ack(batch)
        return True

    async def _spool(self, batch: Batch) -> None:
        await self.spool.append(batch)
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
                await self._spool(batch)
