"""Grouping records into batches by size and time, as Filebeat's bulk_max_size.

A batch carries, besides its records, the checkpoint each source reaches once
the batch is acknowledged ("marks"): batches leave in order and every source's
entries are in order inside them, so acknowledging batch n moves each file to
the resume point of its last entry in n (never past an entry still unshipped)
and each journal to the cursor of its last entry in n.

The bounded queue of finished batches is where backpressure starts: when the
shipper cannot keep up (bus down and spool full), ``add`` waits and the file
readers stop reading.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from telemetry.models import RawLog

__all__ = ["Batch", "Batcher", "Mark"]


@dataclass(slots=True)
class Mark:
    """Where a source stands once the batch holding its entries is acknowledged.

    A file: ``end`` (its resume point), the lines past it already shipped (``skips``), and
    the inode, device and name it is read under. A journal: its ``cursor``.
    """

    end: int
    inode: int = 0
    dev: int = 0
    path: str = ""
    skips: tuple[tuple[int, int], ...] = ()
    cursor: str | None = None

    def to_list(self) -> list[object]:
        return [self.end, self.inode, self.dev, self.path, [list(s) for s in self.skips], self.cursor]

    @classmethod
    def from_list(cls, raw: Sequence[Any]) -> Mark:
        """A mark as ``to_list`` wrote it (the spool's form); spools written before skips have four items."""
        skips = tuple((int(a), int(b)) for a, b in raw[4]) if len(raw) > 4 else ()
        cursor = str(raw[5]) if len(raw) > 5 and raw[5] is not None else None
        return cls(int(raw[0]), int(raw[1]), int(raw[2]), str(raw[3]), skips, cursor)


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
            "marks": {key: m.to_list() for key, m in self.marks.items()},
        })
        return gzip.compress(body, compresslevel=3) if compression == "gzip" else body

    @classmethod
    def from_bytes(cls, data: bytes) -> Batch:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        raw = orjson.loads(data)
        b = cls()
        b.records = [RawLog.model_validate(r) for r in raw["records"]]
        b.marks = {key: Mark.from_list(m) for key, m in raw["marks"].items()}
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
        self, records: list[RawLog], sizes: list[int], key: str, mark_at: Callable[[int], Mark],
    ) -> None:
        """``add`` for consecutive entries of one source, with one mark per batch they land in.

        ``sizes`` are the entries' text lengths; ``mark_at(i)`` is the source's mark once
        record ``i`` is acknowledged, asked for the last record of each batch only. The
        batches come out exactly as from one ``add`` per record (same cuts, same marks),
        without a Mark per record.
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
            batch.marks[key] = mark_at(i - 1)
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
