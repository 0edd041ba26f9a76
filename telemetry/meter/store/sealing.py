"""Sealing an hour of a raw partition, in three steps so the heavy one needs no lock.

1. ``snapshot`` (under the store's lock): the head rows before the cut, and
   where the head and its log stood (rows, last blob).
2. ``pack`` (no lock; a worker process when sealing in the background):
   which message ids need storing (a SHA-1 per row), chunks, minute blobs
   and roll-up rows. This is ~1.5 µs a sample, as much as the write loop
   itself; on a second core it leaves the ingest path.
3. ``commit`` (under the lock): one transaction writes it all and deletes
   the log blobs the snapshot covered, replacing them with one blob of the
   snapshot's rows that stay open; then the head drops exactly the sealed
   rows. Rows written meanwhile stay in their own blobs and in the head.

The head and the files always hold each row once: before the commit in the
head and the log, after it in the chunks and roll-ups, and queries see one
or the other because they take the same lock.
"""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import numpy as np

from telemetry.meter.statistics import from_ms
from telemetry.meter.store.base import GRANULARITY, SeriesRow
from telemetry.meter.store.head import Head, wal_blob
from telemetry.meter.store.packing import EMPTY, Columns, encode_chunks, minute_blobs, regroup, rollup, sort_rows
from telemetry.meter.store.sqlite_sql import LEGACY_UPSERT, METER_UPSERT, ROLLUP_UPSERT
from telemetry.models import id_of_key

log = logging.getLogger(__name__)


@dataclass
class Sealing:
    cut: int
    rows: int  # head rows at the snapshot (the sealed ones and ``rest``)
    seq: int  # the last log blob at the snapshot
    before: Columns
    rest: Columns
    work: Work
    sql: list[tuple[str, list[tuple[Any, ...]]]] = field(default_factory=list)
    sealed: dict[int, int] = field(default_factory=dict)  # series -> last sealed time


@dataclass
class Work:
    """What packing needs besides the rows (small: it may cross to a worker process)."""

    names: list[str]  # meters of the sealed rows
    sids: np.ndarray  # their series, sorted
    meter_of: np.ndarray  # index into ``names`` per entry of ``sids``
    prefixes: dict[int, tuple[bytes, bytes]]  # series -> the parts of its derived message ids around the time
    legacy_h1: bool


def snapshot(conn: sqlite3.Connection, head: Head, cut: int, series: Callable[[int], SeriesRow],
             legacy_h1: bool) -> Sealing | None:
    before, rest = head.split(cut)
    if not len(before):
        return None
    seq = conn.execute("SELECT coalesce(max(seq), 0) FROM main.wal").fetchone()[0]
    sids = np.unique(before.sid)
    rows = [series(s) for s in sids.tolist()]
    names = sorted({r.meter for r in rows})
    index = {n: i for i, n in enumerate(names)}
    prefixes = {r.id: (f"sample\x1f{r.meter}\x1f{r.resource_id}\x1f".encode(), f"\x1f{r.source}".encode())
                for r in rows}
    work = Work(names, sids, np.array([index[r.meter] for r in rows], np.int64), prefixes, legacy_h1)
    return Sealing(cut, len(before) + len(rest), seq, before, rest, work)


def strip_derivable(c: Columns, prefixes: dict[int, tuple[bytes, bytes]]) -> list[str | None]:
    """The message ids with None where the id is the one ``Sample`` derives from the row itself
    (``derived_sample_id`` of its millisecond timestamp): those need not be stored."""
    ids = list(c.ids)
    isos: dict[int, bytes] = {}
    for i, (sid, ts, m) in enumerate(zip(c.sid.tolist(), c.ts.tolist(), ids)):
        if m is None or len(m) != 36 or m[14] != "5":  # derived ids are version-5 UUIDs
            continue
        iso = isos.get(ts)
        if iso is None:
            iso = isos[ts] = from_ms(ts).isoformat().encode()
        pre, post = prefixes[sid]
        if m == id_of_key(pre + iso + post):
            ids[i] = None
    return ids


def pack_rows(before: Columns, work: Work) -> tuple[list[tuple[str, list[tuple[Any, ...]]]], dict[int, int]]:
    """Everything the commit writes, as statements and their rows, and the last sealed time per series."""
    c = sort_rows(before)
    c.ids = strip_derivable(c, work.prefixes)
    packed = encode_chunks(c)
    sql: list[tuple[str, list[tuple[Any, ...]]]] = [("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)", packed)]
    for rk in ("m1", "h1"):
        r = rollup(c, GRANULARITY[rk])
        if rk == "m1":
            sql.append(("INSERT INTO m1.minutes VALUES (?, ?, ?)", minute_blobs(r)))
        else:
            legacy = work.legacy_h1
            sql.append(((LEGACY_UPSERT if legacy else ROLLUP_UPSERT).format(db=rk), r.rows(not legacy)))
        by_meter = regroup(r, work.meter_of[np.searchsorted(work.sids, r.key)])
        sql.append((METER_UPSERT.format(db=rk), by_meter.rows(True, work.names)))
    sealed: dict[int, int] = {}
    for sid, _, t1, _, _ in packed:
        if t1 > sealed.get(sid, -1):
            sealed[sid] = t1
    return sql, sealed


def pack(s: Sealing) -> None:
    s.sql, s.sealed = pack_rows(s.before, s.work)


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
#: Seconds between a worker's checks that the daemon that started it is still there.
PARENT_CHECK = 0.5


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: exit when the daemon dies, even by SIGKILL.

    A worker blocked on its call queue would otherwise stay forever with
    parent PID 1, and keep multiprocessing's resource tracker alive with it.
    A thread polling the parent PID works everywhere (PR_SET_PDEATHSIG fires
    when the spawning *thread* ends, which here is any short-lived caller).
    """
    import os
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_pool() -> ProcessPoolExecutor:
    """The one sealing worker process, started on first use."""
    import os

    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_exit_with_parent, initargs=(os.getpid(),))
        return _pool


def pack_elsewhere(s: Sealing) -> None:
    """``pack`` in a worker process: threads would share one GIL with the write loop, a process has a
    core of its own. Falls back to this process if the worker cannot run."""
    global _pool
    pool = None
    try:
        pool = worker_pool()
        s.sql, s.sealed = pool.submit(pack_rows, s.before, s.work).result()
    except (BrokenProcessPool, OSError, RuntimeError) as e:
        log.warning("sealing worker unavailable (%s); packing in the daemon's process", e)
        with _pool_lock:
            if _pool is pool:
                _pool = None
        pack(s)


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
