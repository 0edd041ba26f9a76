"""Grouping records into batches by size and time, as Filebeat's bulk_max_size.

A batch carries, besides its records, the checkpoint each file reaches once
the batch is acknowledged ("marks"): batches leave in order and every file's
entries are in order inside them, so acknowledging batch n moves each file to
the end of its last entry in n and never past an entry still unshipped.

The bounded queue of finished batches is where backpressure starts: when the
shipper cannot keep up (bus down and spool full), ``add`` waits and the file
readers stop reading.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from dataclasses import dataclass, field

import orjson

from telemetry.models import RawLog

__all__ = ["Batch", "Batcher", "Mark"]


@dataclass(slots=True)
class Mark:
    """Where a file stands once the batch holding its lines is acknowledged."""

    end: int
    inode: int
    dev: int
    path: str


@dataclass
class Batch:
    records: list[RawLog] = field(default_factory=list)
    marks: dict[str, Mark] = field(default_factory=dict)
    size: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, record: RawLog, fp: str | None, mark: Mark | None) -> None:
        if not self.records:
            self.started = time.monotonic()  # the time window counts from the first record
        self.records.append(record)
        self.size += sum(len(line) for line in record.lines) + 64
        if fp is not None and mark is not None:
            self.marks[fp] = mark

    def to_bytes(self, compression: str = "none") -> bytes:
        """The spool form: JSON, gzip-compressed when asked."""
        body = orjson.dumps({
            "records": [r.to_dict() for r in self.records],
            "marks": {fp: [m.end, m.inode, m.dev, m.path] for fp, m in self.marks.items()},
        })
        return gzip.compress(body, compresslevel=3) if compression == "gzip" else body

    @classmethod
    def from_bytes(cls, data: bytes) -> Batch:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        raw = orjson.loads(data)
        b = cls()
        b.records = [RawLog.model_validate(r) for r in raw["records"]]
        b.marks = {fp: Mark(*m) for fp, m in raw["marks"].items()}
        b.size = sum(len(line) for r in b.records for line in r.lines)
        return b


class Batcher:
    """Fills batches; a full or old batch goes to ``out`` (bounded: backpressure)."""

    def __init__(self, max_records: int, max_bytes: int, max_wait: float, queue_size: int = 4) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self.out: asyncio.Queue[Batch] = asyncio.Queue(queue_size)
        self.current = Batch()

    async def add(self, record: RawLog, fp: str | None = None, mark: Mark | None = None) -> None:
        self.current.add(record, fp, mark)
        if len(self.current.records) >= self.max_records or self.current.size >= self.max_bytes:
            await self.flush()

    async def add_many(
        self, records: list[RawLog], sizes: list[int], ends: list[int], fp: str, inode: int, dev: int, path: str,
    ) -> None:
        """``add`` for consecutive entries of one file, with one mark per batch they land in.

        ``sizes`` are the entries' text lengths and ``ends`` their end offsets. The batches
        come out exactly as from one ``add`` per record (same cuts, same marks), without a
        Mark per record.
        """
        i, n = 0, len(records)
        while i < n:
            batch = self.current
            recs, size = batch.records, batch.size
            if not recs:
                batch.started = time.monotonic()
            full = False
            while i < n:
                recs.append(records[i])
                size += sizes[i] + 64
                i += 1
                if len(recs) >= self.max_records or size >= self.max_bytes:
                    full = True
                    break
            batch.size = size
            batch.marks[fp] = Mark(ends[i - 1], inode, dev, path)
            if full:
                await self.flush()

    async def flush(self) -> None:
        # The swap happens before any await and the queue wakes putters first-in first-out,
        # so batches leave in the order they were filled without a lock per record.
        batch, self.current = self.current, Batch()
        if batch.records:
            await self.out.put(batch)

    async def run_timer(self) -> None:
        """Ship a partial batch once it is ``max_wait`` old."""
        while True:
            await asyncio.sleep(self.max_wait / 2)
            if self.current.records and time.monotonic() - self.current.started >= self.max_wait:
                await self.flush()
