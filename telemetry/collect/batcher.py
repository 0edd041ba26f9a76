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

__all__ = ["Batch", "Batcher", "Mark", "Value"]

#: A record as a batch carries it: its JSON, or on the all-in-one's in-process bus the RawLog
#: itself (encoded only if the batch has to be spooled), so nothing between the agent and the
#: parse stage of one process encodes and decodes it.
Value = bytes | RawLog


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
    """Records as the bus carries them (JSON, or RawLogs in-process), with their partition keys."""

    values: list[Value] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)  # each record's host: per-source order on the bus
    marks: dict[str, Mark] = field(default_factory=dict)
    size: int = 0
    started: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.values)

    def encoded(self) -> list[bytes]:
        """Every record as JSON (what a broker, the spool and the output file carry)."""
        return [v if v.__class__ is bytes else v.to_json() for v in self.values]  # type: ignore[union-attr]

    def to_bytes(self, compression: str = "none") -> bytes:
        """The spool form: JSON, gzip-compressed when asked."""
        body = b'{"records":[' + b",".join(self.encoded()) + b'],"marks":' + orjson.dumps(
            {key: m.to_list() for key, m in self.marks.items()}) + b"}"
        return gzip.compress(body, compresslevel=3) if compression == "gzip" else body

    @classmethod
    def from_bytes(cls, data: bytes) -> Batch:
        """A spooled batch; raises ValueError (or a decoding error) for a file that is not one."""
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        raw = orjson.loads(data)
        b = cls()
        for r in raw["records"]:
            if not (isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("lines"), list)):
                raise ValueError(f"not a record: {str(r)[:200]}")
            b.values.append(orjson.dumps(r))
            b.keys.append(str(r.get("host", "")).encode())
            b.size += sum(len(line) for line in r["lines"]) + 64
        b.marks = {key: Mark.from_list(m) for key, m in raw["marks"].items()}
        return b


class Batcher:
    """Fills batches; a full or old batch goes to ``out`` (bounded: backpressure)."""

    def __init__(self, max_records: int, max_bytes: int, max_wait: float, queue_size: int = 4,
                 objects: bool = False) -> None:
        self.max_records = max_records
        #: Sources hand over RawLog objects, not their JSON: the batches go to a bus in this process.
        self.objects = objects
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self.out: asyncio.Queue[Batch] = asyncio.Queue(queue_size)
        self.current = Batch()

    async def add(self, record: RawLog, source: str | None = None, mark: Mark | None = None) -> None:
        """One record of a source that builds RawLog objects (syslog)."""
        await self.add_many([record if self.objects else record.to_json()], [sum(map(len, record.lines))], record.host.encode(),
                            source, (lambda i: mark) if mark is not None else None)

    async def add_many(
        self, values: list[Value], sizes: list[int], hosts: bytes | list[bytes], source: str | None,
        mark_at: Callable[[int], Mark] | None,
    ) -> None:
        """Consecutive encoded records of one source, with one mark per batch they land in.

        ``sizes`` are the entries' text lengths and ``hosts`` their partition keys (one for
        all, or one each); ``mark_at(i)`` is the source's mark once record ``i`` is
        acknowledged, asked for the last record of each batch only. A batch is full once
        it holds ``max_records`` records or ``max_bytes`` (text plus 64 bytes a record),
        exactly as if records were added one at a time.
        """
        i, n = 0, len(values)
        while i < n:
            batch = self.current
            if not batch.values:
                batch.started = time.monotonic()  # the time window counts from the first record
            j = min(n, i + self.max_records - len(batch.values))
            size = batch.size + sum(sizes[i:j]) + 64 * (j - i)
            full = j - i == self.max_records - len(batch.values)
            if size >= self.max_bytes:  # cut at the record that fills it
                size = batch.size
                for k in range(i, j):
                    size += sizes[k] + 64
                    if size >= self.max_bytes:
                        j = k + 1
                        break
                full = True
            batch.values += values[i:j]
            batch.keys += hosts[i:j] if isinstance(hosts, list) else [hosts] * (j - i)
            batch.size = size
            if source is not None and mark_at is not None:
                batch.marks[source] = mark_at(j - 1)
            i = j
            if full:
                await self.flush()

    async def flush(self) -> None:
        # The swap happens before any await and the queue wakes putters first-in first-out,
        # so batches leave in the order they were filled without a lock per record.
        batch, self.current = self.current, Batch()
        if batch.values:
            await self.out.put(batch)

    async def run_timer(self) -> None:
        """Ship a partial batch once it is ``max_wait`` old."""
        while True:
            await asyncio.sleep(self.max_wait / 2)
            if self.current.values and time.monotonic() - self.current.started >= self.max_wait:
                await self.flush()
