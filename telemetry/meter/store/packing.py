"""Sealing rows column-wise: chunks and roll-ups of many series at once, with numpy.

``chunks.encode`` packs one series' hour in pure Python: fine for a chunk,
but sealing an hour of a busy store is ~400,000 rows, and a Python loop per
row would cost as much as the whole ingest path. Here the rows of every
series are sorted once and each transform (delta-of-delta, decimal
mantissas, XOR, byte shuffle) runs over all of them; only ``zlib`` and the
final ``bytes`` remain per chunk. The output is byte for byte what
``chunks.encode`` writes (a test checks it), so ``chunks.decode`` reads both.

Roll-ups come from the same sorted columns: one ``reduceat`` per aggregate.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from telemetry.meter.statistics import Partial
from telemetry.meter.store.chunks import HEADER, LEVEL

HOUR_MS = 3_600_000
_MAX_MANTISSA = float(2**53)


@dataclass(slots=True)
class Columns:
    """Rows as parallel arrays, and their message ids (None where derivable from the row itself)."""

    sid: np.ndarray  # int64
    ts: np.ndarray  # int64
    vol: np.ndarray  # float64
    rec: np.ndarray  # int64
    ids: list[str | None]

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> Columns:
        """The rows at ``idx``, in that order."""
        ids = self.ids
        return Columns(self.sid[idx], self.ts[idx], self.vol[idx], self.rec[idx], [ids[i] for i in idx.tolist()])

    @staticmethod
    def concat(parts: list[Columns]) -> Columns:
        if len(parts) == 1:
            return parts[0]
        return Columns(np.concatenate([p.sid for p in parts]), np.concatenate([p.ts for p in parts]),
                       np.concatenate([p.vol for p in parts]), np.concatenate([p.rec for p in parts]),
                       [m for p in parts for m in p.ids])


EMPTY = Columns(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.int64), [])


def sort_rows(c: Columns) -> Columns:
    """By series, then time (stable: equal times keep their arrival order)."""
    return c.take(np.lexsort((c.ts, c.sid)))


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Indices where any of the (sorted) key columns changes, beginning with 0."""
    change = np.zeros(len(keys[0]), bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _deltas(x: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``chunks._deltas`` per chunk: each chunk's first value kept, the rest minus their predecessor."""
    out = np.empty_like(x)
    out[0] = x[0]
    np.subtract(x[1:], x[:-1], out=out[1:])
    out[first] = x[first]
    return out


def _decimals(vol: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``chunks._decimals`` of every chunk: the fewest decimals (0..6) exact for all its values, or -1."""
    ks = np.full(len(starts), -1, np.int8)
    todo = np.ones(len(starts), bool)
    negzero = (vol == 0) & np.signbit(vol)
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(7):
            p = 10.0**k
            m = np.round(vol * p)
            ok = (m / p == vol) & (np.abs(m) < _MAX_MANTISSA) & ~negzero
            good = np.logical_and.reduceat(ok, starts) & todo
            ks[good] = k
            todo &= ~good
            if not todo.any():
                break
    return ks


def _planes(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint8).reshape(-1, 8)


def encode_chunks(c: Columns) -> list[tuple[int, int, int, int, bytes]]:
    """(series, t0, t1, n, blob) per series and hour of sorted rows ``c``; blobs as ``chunks.encode``."""
    if not len(c):
        return []
    starts = _starts(c.sid, c.ts // HOUR_MS)
    ends = np.append(starts[1:], len(c))
    ks = _decimals(c.vol, starts)
    row_k = np.repeat(ks, np.diff(np.append(starts, len(c))))
    with np.errstate(invalid="ignore", over="ignore"):
        mant = np.round(c.vol * 10.0 ** np.maximum(row_k, 0))
    mant = np.where(row_k >= 0, mant, 0).astype(np.int64)
    bits = c.vol.view(np.int64)
    xor = np.empty_like(bits)
    xor[0] = bits[0]
    np.bitwise_xor(bits[1:], bits[:-1], out=xor[1:])
    xor[starts] = bits[starts]
    vol = np.where(row_k >= 0, _deltas(mant, starts), xor)
    ts_col = _planes(_deltas(_deltas(c.ts, starts), starts))
    vol_col, rec_col = _planes(vol), _planes(_deltas(c.rec, starts))
    sid, ts, ids = c.sid.tolist(), c.ts.tolist(), c.ids
    out = []
    for s, e, k in zip(starts.tolist(), ends.tolist(), ks.tolist()):
        body = [ts_col[s:e].T.tobytes(), vol_col[s:e].T.tobytes(), rec_col[s:e].T.tobytes()]
        exc = [(i - s, ids[i]) for i in range(s, e) if ids[i] is not None]
        if exc:
            body.append(orjson.dumps(exc))
        out.append((sid[s], ts[s], ts[e - 1], e - s, HEADER.pack(1, k, e - s) + zlib.compress(b"".join(body), LEVEL)))
    return out


@dataclass(slots=True)
class Rollup:
    """Partial aggregates per (key, bucket) as columns."""

    key: np.ndarray
    bucket: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray
    min: np.ndarray
    max: np.ndarray
    tmin: np.ndarray
    tmax: np.ndarray

    def rows(self, compact: bool, names: list[str] | None = None) -> list[tuple[Any, ...]]:
        """Upsert parameters; ``compact``: a one-sample row stores NULL where its values are implied
        (``sqlite_sql.ROLLUP_DDL``); ``names``: the key is an index into these (meter names)."""
        key = self.key.tolist()
        cols = [[names[k] for k in key] if names is not None else key]
        cols += [getattr(self, f).tolist() for f in ("bucket", "count", "sum", "sumsq", "min", "max", "tmin", "tmax")]
        if not compact:
            return list(zip(*cols))
        return [r if r[2] > 1 else (r[0], r[1], 1, r[3], None, None, None, r[7], None) for r in zip(*cols)]


def rollup(c: Columns, g: int) -> Rollup:
    """Per-series partials of sorted rows ``c`` in buckets of ``g`` ms."""
    bucket = c.ts - c.ts % g
    starts = _starts(c.sid, bucket)
    ends = np.append(starts[1:], len(c))
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        sq = c.vol * c.vol
    return Rollup(c.sid[starts], bucket[starts], np.diff(np.append(starts, len(c))), np.add.reduceat(c.vol, starts),
                  np.add.reduceat(sq, starts), np.minimum.reduceat(c.vol, starts),
                  np.maximum.reduceat(c.vol, starts), c.ts[starts], c.ts[ends - 1])


def regroup(r: Rollup, key: np.ndarray) -> Rollup:
    """The partials of ``r`` merged per (``key``, bucket): per-meter roll-ups from per-series ones."""
    order = np.lexsort((r.bucket, key))
    key, bucket = key[order], r.bucket[order]
    starts = _starts(key, bucket)

    def red(op: Any, col: np.ndarray) -> np.ndarray:
        return op.reduceat(col[order], starts)

    return Rollup(key[starts], bucket[starts], red(np.add, r.count), red(np.add, r.sum), red(np.add, r.sumsq),
                  red(np.minimum, r.min), red(np.maximum, r.max), red(np.minimum, r.tmin), red(np.maximum, r.tmax))


_MINUTES = struct.Struct("<BH")  # format version, rows
#: Column layout of a minutes blob: (dtype, Rollup field), after a minute-of-the-hour column (uint8).
_MINUTE_COLS = ((np.uint32, "count"), (np.uint32, "tmin"), (np.uint32, "tmax"), (np.float64, "sum"),
                (np.float64, "sumsq"), (np.float64, "min"), (np.float64, "max"))


def minute_blobs(r: Rollup) -> list[tuple[int, int, bytes]]:
    """(series, hour start, blob): one series' minute partials of one hour, from per-series minute
    roll-ups ``r`` (sorted by series and bucket).

    A row per series and minute cost ~2 µs to upsert and ~60 bytes on disk, the largest share of both
    ingest time and size; 60 of them packed as columns cost one insert and a few bytes a sample."""
    if not len(r.key):
        return []
    hour = r.bucket - r.bucket % HOUR_MS
    starts = _starts(r.key, hour)
    ends = np.append(starts[1:], len(hour))
    cols = [((r.bucket - hour) // 60_000).astype(np.uint8)]
    for dt, name in _MINUTE_COLS:
        v = getattr(r, name)
        cols.append((v - hour if name in ("tmin", "tmax") else v).astype(dt))
    out = []
    for s, e, sid, h in zip(starts.tolist(), ends.tolist(), r.key[starts].tolist(), hour[starts].tolist()):
        body = b"".join(c[s:e].tobytes() for c in cols)
        out.append((sid, h, _MINUTES.pack(1, e - s) + zlib.compress(body, LEVEL)))
    return out


def minute_count(blob: bytes) -> int:
    return int(_MINUTES.unpack_from(blob)[1])


def minute_rollups(blobs: list[tuple[int, bytes]]) -> Rollup:
    """The partials of (hour, blob) minutes blobs at once (a day of one series is 24): a column is sliced
    out of every blob and converted once, not blob by blob. ``key`` is left zero: the caller knows the series."""
    bodies, sizes, hours = [], [], []
    for hour, blob in blobs:
        _, n = _MINUTES.unpack_from(blob)
        bodies.append(zlib.decompress(memoryview(blob)[_MINUTES.size:]))
        sizes.append(n)
        hours.append(hour)
    hour_of = np.repeat(np.array(hours, np.int64), sizes)
    offsets = [0] * len(bodies)

    def column(dt: Any) -> np.ndarray:
        out = []
        for i, (body, n) in enumerate(zip(bodies, sizes)):
            v = np.frombuffer(body, dt, n, offsets[i])
            offsets[i] += v.nbytes
            out.append(v)
        return np.concatenate(out) if len(out) > 1 else out[0]

    bucket = column(np.uint8).astype(np.int64) * 60_000 + hour_of
    cols: dict[str, np.ndarray] = {}
    for dt, name in _MINUTE_COLS:
        v = column(dt)
        cols[name] = v.astype(np.int64) + hour_of if name in ("tmin", "tmax") else v.astype(
            np.int64 if dt is np.uint32 else np.float64)
    return Rollup(np.zeros(len(bucket), np.int64), bucket, **cols)


def add_partials(out: dict[tuple[int, int], Partial], bucket: np.ndarray, gid: np.ndarray, r: Rollup) -> None:
    """Merge the partials ``r`` into ``out`` keyed by (period bucket, group), given per row."""
    if not len(bucket):
        return
    order = np.lexsort((gid, bucket))
    b, g = bucket[order], gid[order]
    starts = _starts(b, g)

    def red(op: Any, col: np.ndarray) -> list[Any]:
        return op.reduceat(col[order], starts).tolist()

    if len(starts) == len(b):  # every (bucket, group) once (a period of one roll-up interval): no reducing
        cols = tuple(getattr(r, f)[order].tolist() for f in ("count", "sum", "sumsq", "min", "max", "tmin", "tmax"))
    else:
        cols = (red(np.add, r.count), red(np.add, r.sum), red(np.add, r.sumsq), red(np.minimum, r.min),
                red(np.maximum, r.max), red(np.minimum, r.tmin), red(np.maximum, r.tmax))
    keys = zip(b[starts].tolist(), g[starts].tolist())
    if not out:  # the usual case, and the one with 1,440 buckets a day: no merging, one C-level loop
        out.update(zip(keys, map(Partial, *cols)))
        return
    for key, n, s, sq, mn, mx, t0, t1 in zip(keys, *cols):
        p = out.get(key)
        if p is None:
            out[key] = Partial(n, s, sq, mn, mx, t0, t1)
        else:
            p.merge(Partial(n, s, sq, mn, mx, t0, t1))
