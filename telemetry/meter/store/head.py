"""The open part of a raw partition: rows not sealed into chunks yet.

A row per sample in a SQLite B-tree (and four roll-up upserts per batch)
cost ~20 µs a sample, an order of magnitude more than a time series
database spends. So, as in Prometheus' head block, the open hour lives in
memory, and its durability comes from a log: each batch of new rows is one
blob in the partition file's ``wal`` table, committed before ``write``
returns. When an hour is over, its rows are packed into chunks and rolled up
in one transaction that also rewrites the log to hold exactly the rows left
in the head. Reopening a file replays its log, so a kill -9 loses nothing
that was acknowledged.

Dedup: a row's identity is (series, time, message id). A row newer than
every row of its series in the head is new; others are looked up in the
head's identities (built on first need); rows older than what was sealed
are checked against the chunks instead. Whether a message id can be left
out of storage (derivable from the row) is decided when sealing, off the
write path.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from telemetry.meter.statistics import Partial
from telemetry.meter.store.packing import EMPTY, Columns, Rollup, add_partials

_WAL = struct.Struct("<II")  # rows, bytes of message ids (JSON)
#: Segments are merged into one array set once there are this many (queries and seals scan them all).
_MERGE_AT = 64


def wal_blob(c: Columns) -> bytes:
    ids = orjson.dumps(c.ids)
    return b"".join((_WAL.pack(len(c), len(ids)), c.sid.tobytes(), c.ts.tobytes(), c.vol.tobytes(),
                     c.rec.tobytes(), ids))


def wal_columns(blob: bytes) -> Columns:
    n, k = _WAL.unpack_from(blob)
    o = _WAL.size
    cols = [np.frombuffer(blob, dt, n, o + i * 8 * n).copy()
            for i, dt in enumerate((np.int64, np.int64, np.float64, np.int64))]
    return Columns(cols[0], cols[1], cols[2], cols[3], orjson.loads(blob[o + 32 * n:o + 32 * n + k]))


def row_keys(c: Columns) -> set[tuple[Any, ...]]:
    """Row identities: (series, time, message id)."""
    return set(zip(c.sid.tolist(), c.ts.tolist(), c.ids))


class Head:
    def __init__(self) -> None:
        self.segments: list[Columns] = []
        self.newest: dict[int, int] = {}  # series -> its newest row here: a newer row is new
        self.min_ts: int | None = None
        self._keys: set[tuple[Any, ...]] | None = None

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)

    def key_set(self) -> set[tuple[Any, ...]]:
        """Every row's identity, built when first needed: rows arriving in time order never need it."""
        if self._keys is None:
            self._keys = row_keys(self.columns())
        return self._keys

    def add(self, c: Columns, newest: dict[int, int] | None = None) -> None:
        """Rows already logged. ``newest``: per series, a time at or after its newest row in ``c`` (the
        write loop has it already); computed here when not given."""
        if not len(c):
            return
        self.segments.append(c)
        if self._keys is not None:
            self._keys |= row_keys(c)
        if newest is None:
            order = np.lexsort((c.ts, c.sid))
            sid, ts = c.sid[order], c.ts[order]
            last = np.append(sid[1:] != sid[:-1], True)
            newest = dict(zip(sid[last].tolist(), ts[last].tolist()))
        mine = self.newest
        for s, t in newest.items():
            if t > mine.get(s, -1):
                mine[s] = t
        lo = int(c.ts.min())
        self.min_ts = lo if self.min_ts is None else min(self.min_ts, lo)
        if len(self.segments) >= _MERGE_AT:
            self.segments = [Columns.concat(self.segments)]

    def columns(self) -> Columns:
        if not self.segments:
            return EMPTY
        if len(self.segments) > 1:
            self.segments = [Columns.concat(self.segments)]
        return self.segments[0]

    def split(self, cut: int) -> tuple[Columns, Columns]:
        """(rows before ``cut``, the rest), without changing the head (the caller commits, then resets)."""
        c = self.columns()
        before = c.ts < cut
        if before.all():
            return c, EMPTY
        return c.take(np.flatnonzero(before)), c.take(np.flatnonzero(~before))

    def reset(self, rest: Columns) -> None:
        self.segments, self.newest, self.min_ts, self._keys = [], {}, None, None
        self.add(rest)

    def select(self, sids: np.ndarray, lo: int | None, hi: int | None) -> Columns:
        """Rows of the series ``sids`` in [lo, hi)."""
        c = self.columns()
        if not len(c):
            return c
        mask = np.isin(c.sid, sids)
        if lo is not None:
            mask &= c.ts >= lo
        if hi is not None:
            mask &= c.ts < hi
        return c.take(np.flatnonzero(mask))


def partials(c: Columns, sel: dict[int, int], origin: int, period: int | None,
             out: dict[tuple[int, int], Partial]) -> None:
    """Merge the partial aggregates of rows ``c`` per (period bucket, group of ``sel``) into ``out``."""
    if not len(c):
        return
    ids = np.fromiter(sel.keys(), np.int64, len(sel))
    order = np.argsort(ids)
    gids = np.fromiter(sel.values(), np.int64, len(sel))[order]
    gid = gids[np.searchsorted(ids[order], c.sid)]
    bucket = (c.ts - origin) // period if period else np.zeros(len(c), np.int64)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        sq = c.vol * c.vol
    add_partials(out, bucket, gid, Rollup(c.sid, c.ts, np.ones(len(c), np.int64), c.vol, sq, c.vol, c.vol, c.ts, c.ts))
