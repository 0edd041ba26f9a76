"""Sealing an hour of a raw partition, in three steps so the heavy one needs no lock.

1. ``snapshot`` (under the store's lock): the head rows before the cut, and
   where the head and its log stood (rows, last blob).
2. ``pack`` (anywhere, e.g. a background thread): chunks, minute blobs and
   roll-up rows, all numpy and zlib, which release the GIL for most of it.
   Sealing an hour is ~0.7 µs a sample; done beside the write loop on a
   second core it leaves the ingest path.
3. ``commit`` (under the lock): one transaction writes it all and deletes
   the log blobs the snapshot covered, replacing them with one blob of the
   snapshot's rows that stay open; then the head drops exactly the sealed
   rows. Rows written meanwhile stay in their own blobs and in the head.

The head and the files always hold each row once: before the commit in the
head and the log, after it in the chunks and roll-ups, and queries see one
or the other because they take the same lock.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from telemetry.meter.store.base import GRANULARITY
from telemetry.meter.store.head import Head, wal_blob
from telemetry.meter.store.packing import EMPTY, Columns, encode_chunks, minute_blobs, regroup, rollup, sort_rows
from telemetry.meter.store.sqlite_sql import LEGACY_UPSERT, METER_UPSERT, ROLLUP_UPSERT


@dataclass
class Sealing:
    cut: int
    rows: int  # head rows at the snapshot (the sealed ones and ``rest``)
    seq: int  # the last log blob at the snapshot
    before: Columns
    rest: Columns
    names: list[str]  # meters of the sealed rows
    sids: np.ndarray  # their series, sorted
    meter_of: np.ndarray  # index into ``names`` per entry of ``sids``
    legacy_h1: bool
    sql: list[tuple[str, list[tuple[Any, ...]]]] = field(default_factory=list)
    sealed: dict[int, int] = field(default_factory=dict)  # series -> last sealed time


def snapshot(conn: sqlite3.Connection, head: Head, cut: int, meter: Callable[[int], str],
             legacy_h1: bool) -> Sealing | None:
    before, rest = head.split(cut)
    if not len(before):
        return None
    seq = conn.execute("SELECT coalesce(max(seq), 0) FROM main.wal").fetchone()[0]
    sids = np.unique(before.sid)
    meters = [meter(s) for s in sids.tolist()]
    names = sorted(set(meters))
    index = {n: i for i, n in enumerate(names)}
    return Sealing(cut, len(before) + len(rest), seq, before, rest, names,
                   sids, np.array([index[m] for m in meters], np.int64), legacy_h1)


def pack(s: Sealing) -> None:
    """Everything the commit writes, as statements and their rows."""
    c = sort_rows(s.before)
    packed = encode_chunks(c)
    s.sql.append(("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)", packed))
    for rk in ("m1", "h1"):
        r = rollup(c, GRANULARITY[rk])
        if rk == "m1":
            s.sql.append(("INSERT INTO m1.minutes VALUES (?, ?, ?)", minute_blobs(r)))
        else:
            s.sql.append(((LEGACY_UPSERT if s.legacy_h1 else ROLLUP_UPSERT).format(db=rk), r.rows(not s.legacy_h1)))
        by_meter = regroup(r, s.meter_of[np.searchsorted(s.sids, r.key)])
        s.sql.append((METER_UPSERT.format(db=rk), by_meter.rows(True, s.names)))
    for sid, _, t1, _, _ in packed:
        if t1 > s.sealed.get(sid, -1):
            s.sealed[sid] = t1


def commit(conn: sqlite3.Connection, head: Head, sealed: dict[int, int], s: Sealing) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in s.sql:
            conn.executemany(sql, rows)
        conn.execute("DELETE FROM main.wal WHERE seq <= ?", (s.seq,))
        if len(s.rest):
            conn.execute("INSERT INTO main.wal(data) VALUES (?)", (wal_blob(s.rest),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    now = head.columns()
    parts = [s.rest, now.take(np.arange(s.rows, len(now)))]  # rows written since the snapshot follow it
    parts = [p for p in parts if len(p)]
    head.reset(Columns.concat(parts) if parts else EMPTY)
    for sid, t1 in s.sealed.items():
        if t1 > sealed.get(sid, -1):
            sealed[sid] = t1
