"""The embedded backend: SQLite files under ``<data_dir>/samples/``, a file per partition.

- ``index.db``: the series catalogue;
- ``raw-<ttl>-<YYYYMMDD>.db``: raw samples of one day and one TTL class: ``chunks``
  (a series' samples of one hour packed and compressed, ``chunks.py``: ~1-8
  bytes a sample) and ``wal``, the log of the rows not sealed yet, which live
  in memory meanwhile (``head.py``);
- ``m1-<YYYYMMDD>.db`` / ``h1-<YYYYMMDD>.db``: per-minute / per-hour roll-ups of one day,
  per series and per meter.

Writing a batch is one blob appended to ``wal``. Once the newest sample of a
partition is ``GRACE_MS`` past the end of an hour, the rows before that hour
are sealed: packed into chunks and rolled up (``packing.py``, column-wise),
in one transaction that also rewrites ``wal`` to the rows still open. A raw
file's connection attaches that day's roll-up files and the rollback journal
(not WAL mode) makes that commit atomic across them.

Expiry unlinks a file, so the space is back at once (no VACUUM, no dump and
restore).

Durability: ``synchronous=NORMAL``. A write that returned survives the
process being killed (kill -9: the pages are in the OS cache and the journal
protects the files; reopening replays ``wal``); it needs fsync only against
power loss or a kernel crash, where NORMAL may lose the last batches but not
the database. The bus redelivers what was not acknowledged and writes are
idempotent, so that window costs at most a redelivery, never a double count.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter, Histogram

from telemetry.meter.statistics import from_ms
from telemetry.meter.store import chunks
from telemetry.meter.store.base import (
    DAY_MS, EPOCH_DAY, Kind, Partition, SampleStore, TtlPolicy, WriteResult, day_start_ms, derived_sample_id,
)
from telemetry.meter.store.head import Head, wal_blob, wal_columns
from telemetry.meter.store.ingest import Part, Splitter
from telemetry.meter.store.packing import Columns, encode_chunks, sort_rows
from telemetry.meter.store.sealing import Sealing, commit, pack, pack_elsewhere, snapshot
from telemetry.meter.store.sql import SERIES_COLUMNS
from telemetry.meter.store.sqlite_read import SqliteReads
from telemetry.meter.store.sqlite_sql import (
    CHUNK_DDL, CHUNK_INDEX, HOT_DDL, METER_DDL, MINUTES_DDL, MINUTES_INDEX, ROLLUP_DDL, ROLLUP_PARTIAL, WAL_DDL,
    upgrade_raw,
)
from telemetry.metrics import REGISTRY

log = logging.getLogger(__name__)
SEALS = Counter("telemetry_store_seals", "Hours of raw samples sealed into chunks and roll-ups (embedded store)",
                ["result"], registry=REGISTRY)
SEAL_SECONDS = Histogram("telemetry_store_seal_seconds", "Time to seal, from snapshot to commit (embedded store)",
                         registry=REGISTRY, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
FILE = re.compile(r"^(raw-(\d+)|m1|h1)-(\d{8})\.db$")
HOUR_MS = 3_600_000
#: Rows stay in the head until their partition has moved this far past the end of their hour.
GRACE_MS = 10 * 60_000
MAX_OPEN = 48
#: Series time ranges (first/last sample) reach the index at most this often (and before any read).
RANGE_FLUSH_S = 1.0


def _stamp(d: date) -> str:
    return d.strftime("%Y%m%d")


@dataclass
class RawState:
    """What the writer keeps of an open raw partition."""

    head: Head = field(default_factory=Head)
    sealed: dict[int, int] = field(default_factory=dict)  # series -> last ts sealed into chunks
    clock: int = 0  # newest sample time written
    cut: int = 0  # no chunk holds a row at or after this
    legacy: dict[str, bool] = field(default_factory=dict)  # roll-up file -> NOT NULL columns (first layout)


class SqliteSampleStore(SqliteReads, SampleStore):
    def __init__(self, folder: Path, ttl: TtlPolicy, rollup_ttl: dict[str, float] | None = None) -> None:
        super().__init__(ttl, rollup_ttl)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open: OrderedDict[str, sqlite3.Connection] = OrderedDict()
        self._state: dict[str, RawState] = {}
        self._by_id: dict[int, Any] = {}
        self._splitter = Splitter(self.ttl.ttl_for)
        self._ranges: dict[int, list[int]] = {}  # series -> [first, last] not in the index yet
        self._ranges_at = time.monotonic()
        self._sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-seal")
        self._sealing: dict[str, Future[None]] = {}  # raw file -> its seal under way
        self._listing: list[tuple[Kind, int | None, date, Path]] | None = None
        self.index = sqlite3.connect(self.folder / "index.db", check_same_thread=False, isolation_level=None)
        self.index.execute("PRAGMA journal_mode=WAL")
        self.index.execute("PRAGMA synchronous=NORMAL")
        self.index.execute(f"CREATE TABLE IF NOT EXISTS series({SERIES_COLUMNS[0]} INTEGER PRIMARY KEY, "
                           + ", ".join(SERIES_COLUMNS[1:]) + ")")
        self.index.execute("CREATE INDEX IF NOT EXISTS series_meter ON series(meter)")
        self.index.execute("CREATE INDEX IF NOT EXISTS series_resource ON series(resource_id)")

    def describe(self) -> str:
        return f"sqlite://{self.folder}"

    # ---- files and connections ----------------------------------------------------------------
    def _path(self, kind: Kind, d: date, ttl: int | None = None) -> Path:
        name = f"raw-{ttl}" if kind == "raw" else kind
        return self.folder / f"{name}-{_stamp(d)}.db"

    def _conn(self, kind: Kind, d: date, ttl: int | None = None) -> sqlite3.Connection:
        path = self._path(kind, d, ttl)
        key = str(path)
        conn = self._open.get(key)
        if conn is not None:
            self._open.move_to_end(key)
            return conn
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._listing = None  # the file (and a raw file's roll-up files) may be new
        conn.execute("PRAGMA cache_size=-32000")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file: sealing frees pages
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS sel(sid INTEGER PRIMARY KEY, gid INTEGER)")
        if kind == "raw":
            self._state[key] = self._open_raw(conn, d)
        else:
            conn.execute(ROLLUP_DDL.format(db="main"))
            self._meter_table(conn, "main", False)
            if kind == "m1":
                conn.execute(MINUTES_DDL.format(db="main"))
                conn.execute(MINUTES_INDEX.format(db="main"))
        self._open[key] = conn
        while len(self._open) > MAX_OPEN:
            old_key, old = self._open.popitem(last=False)
            old.close()
            self._state.pop(old_key, None)  # its head is in its wal: reopening replays it
        return conn

    def _open_raw(self, conn: sqlite3.Connection, d: date) -> RawState:
        state = RawState()
        fresh_rollups = {rk: not self._path(rk, d).exists() for rk in ("m1", "h1")}
        conn.execute(CHUNK_DDL)
        conn.execute(CHUNK_INDEX)
        conn.execute(WAL_DDL)
        for rk in ("m1", "h1"):
            conn.execute("ATTACH DATABASE ? AS " + rk, (str(self._path(rk, d)),))
            conn.execute(f"PRAGMA {rk}.synchronous=NORMAL")
            conn.execute(ROLLUP_DDL.format(db=rk))
            self._meter_table(conn, rk, fresh_rollups[rk])
            if rk == "m1":
                conn.execute(MINUTES_DDL.format(db=rk))
                conn.execute(MINUTES_INDEX.format(db=rk))
            state.legacy[rk] = any(c[1] == "sumsq" and c[3] for c in conn.execute(f"PRAGMA {rk}.table_info(rollup)"))
        if conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'samples'").fetchone():
            conn.execute(HOT_DDL.format(db="main", table="hot"))
            upgrade_raw(conn)
        if conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'hot'").fetchone():
            self._pack_hot(conn)
        state.sealed = dict(conn.execute("SELECT series_id, max(t1) FROM chunks GROUP BY series_id").fetchall())
        state.cut = max(state.sealed.values(), default=-1) + 1
        for (blob,) in conn.execute("SELECT data FROM main.wal ORDER BY seq"):
            c = wal_columns(blob)
            state.head.add(c)
            state.clock = max(state.clock, int(c.ts.max()))
            self._note_ranges(c.sid, c.ts)  # ranges not flushed before a crash come back
        return state

    def _pack_hot(self, conn: sqlite3.Connection) -> None:
        """Seal the ``hot`` table of files from before the head: its rows are in the roll-ups already,
        so they only become chunks."""
        rows = conn.execute("SELECT series_id, ts, volume, recorded, msgid FROM main.hot").fetchall()
        sid, ts, vol, rec = (np.array([r[i] for r in rows], dt)
                             for i, dt in enumerate((np.int64, np.int64, np.float64, np.int64)))
        cols = Columns(sid, ts, vol, rec, [r[4] for r in rows])
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)", encode_chunks(sort_rows(cols)) if rows else [])
        conn.execute("DROP TABLE main.hot")
        conn.execute("COMMIT")

    def _meter_table(self, conn: sqlite3.Connection, db: str, fresh: bool) -> None:
        """Create the per-meter roll-ups; in a roll-up file written before they existed, fill them from
        the per-series ones, so whole-meter answers include that data too."""
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS smeter(sid INTEGER PRIMARY KEY, meter TEXT)")
        had = fresh or conn.execute(f"SELECT 1 FROM {db}.sqlite_master WHERE name = 'meter_rollup'").fetchone()
        conn.execute(METER_DDL.format(db=db))
        if had or not conn.execute(f"SELECT 1 FROM {db}.rollup LIMIT 1").fetchone():
            return
        conn.execute("DELETE FROM temp.smeter")
        conn.executemany("INSERT INTO temp.smeter VALUES (?, ?)", self.index.execute("SELECT id, meter FROM series"))
        conn.execute(f"INSERT INTO {db}.meter_rollup SELECT m.meter, r.bucket, {ROLLUP_PARTIAL} FROM {db}.rollup r "
                     "CROSS JOIN temp.smeter m ON m.sid = r.series_id GROUP BY 1, 2")

    def _head(self, d: date, ttl: int | None) -> Head:
        self._conn("raw", d, ttl)
        return self._state[str(self._path("raw", d, ttl))].head

    def _close_day(self, d: date) -> None:
        for key in [k for k in self._open if k.endswith(f"-{_stamp(d)}.db")]:
            self._open.pop(key).close()
            self._state.pop(key, None)

    def _files(self) -> list[tuple[Kind, int | None, date, Path]]:
        """The day files, listed once until this store creates or drops one (every query asks)."""
        if self._listing is None:
            self._listing = self._list_files()
        return self._listing

    def _list_files(self) -> list[tuple[Kind, int | None, date, Path]]:
        out: list[tuple[Kind, int | None, date, Path]] = []
        for p in self.folder.iterdir():
            m = FILE.match(p.name)
            if m:
                kind = "raw" if m.group(2) else m.group(1)
                out.append((kind, int(m.group(2)) if m.group(2) else None,  # type: ignore[arg-type]
                            date(int(m.group(3)[:4]), int(m.group(3)[4:6]), int(m.group(3)[6:])), p))
        return out

    # ---- series ranges ----------------------------------------------------------------------------
    def _note_ranges(self, sid: np.ndarray, ts: np.ndarray) -> None:
        if not len(sid):
            return
        u, inv = np.unique(sid, return_inverse=True)
        lo = np.full(len(u), np.iinfo(np.int64).max)
        hi = np.full(len(u), np.iinfo(np.int64).min)
        np.minimum.at(lo, inv, ts)
        np.maximum.at(hi, inv, ts)
        ranges = self._ranges
        for s, a, b in zip(u.tolist(), lo.tolist(), hi.tolist()):
            r = ranges.get(s)
            if r is None:
                ranges[s] = [a, b]
            else:
                if a < r[0]:
                    r[0] = a
                if b > r[1]:
                    r[1] = b

    def _flush_ranges(self) -> None:
        """Series first/last times into the index: a catalogue detail, so batched (at most a second's worth
        is lost by a crash, and replaying the wal brings back what was not sealed)."""
        self._ranges_at = time.monotonic()
        if not self._ranges:
            return
        rows = [(a, b, s) for s, (a, b) in self._ranges.items()]
        self._ranges = {}
        self.index.execute("BEGIN")
        self.index.executemany("UPDATE series SET first_ts = min(first_ts, ?), last_ts = max(last_ts, ?) "
                               "WHERE id = ?", rows)
        self.index.execute("COMMIT")

    # ---- writing ----------------------------------------------------------------------------------
    def write(self, samples: list[Any], now: datetime | None = None) -> WriteResult:
        """Store a batch: new series into the index, then each partition's new rows as one wal blob."""
        now_ms = int((now or datetime.now(timezone.utc)).timestamp() * 1000)
        result = WriteResult()
        with self.lock:
            batch = self._splitter.split(samples, now_ms, self._partition_view)
            parts = [p for p in batch.parts if p.ts]
            if parts:
                sid = np.array([s for p in parts for s in p.sid], np.int64)
                ts = np.array([t for p in parts for t in p.ts], np.int64)
                self._note_ranges(sid, ts)
            if batch.new_series:
                # A series must be in the index before rows that name it are acknowledged.
                rng = self._ranges
                self.index.execute("BEGIN")
                self.index.executemany(
                    f"INSERT OR IGNORE INTO series VALUES ({', '.join('?' * len(SERIES_COLUMNS))})",
                    [(s.id, s.meter, s.counter_type, s.counter_unit, s.resource_id, s.project_id, s.user_id,
                      s.source, orjson.dumps(s.metadata, option=orjson.OPT_SORT_KEYS).decode(),
                      *rng.get(s.id, (now_ms, now_ms))) for s in batch.new_series.values()])
                self.index.execute("COMMIT")
            for p in parts:
                result.inserted += self._append(p, now_ms)
            if time.monotonic() - self._ranges_at >= RANGE_FLUSH_S:
                self._flush_ranges()
        result.expired = batch.expired
        result.duplicates = len(samples) - result.expired - result.inserted
        return result

    def _partition_view(self, ttl: int, day: int) -> tuple[Head, int]:
        d = EPOCH_DAY + timedelta(days=day)
        self._conn("raw", d, ttl)
        state = self._state[str(self._path("raw", d, ttl))]
        return state.head, state.cut

    def _append(self, part: Part, now_ms: int) -> int:
        d = EPOCH_DAY + timedelta(days=part.day)
        conn = self._conn("raw", d, part.ttl)
        state = self._state[str(self._path("raw", d, part.ttl))]
        n = len(part.ts)
        cols = Columns(np.array(part.sid, np.int64), np.array(part.ts, np.int64), np.array(part.vol, np.float64),
                       np.full(n, now_ms, np.int64), part.ids)  # type: ignore[arg-type]
        late = [(i, (part.sid[i], part.ts[i], part.ids[i])) for i in part.late
                if part.ts[i] <= state.sealed.get(part.sid[i], -1)]
        if late:
            present = self._in_chunks(conn, [k for _, k in late])
            gone = [(i, k) for i, k in late if k in present]
            if gone:
                keep = np.ones(n, bool)
                keep[[i for i, _ in gone]] = False
                cols = cols.take(np.flatnonzero(keep))
        if not len(cols):
            return 0
        conn.execute("INSERT INTO main.wal(data) VALUES (?)", (wal_blob(cols),))  # durable from here
        state.head.add(cols, part.newest)
        state.clock = max(state.clock, int(cols.ts.max()))
        cut = min((state.clock - GRACE_MS) // HOUR_MS * HOUR_MS, day_start_ms(d) + DAY_MS)
        if cut > state.cut:
            self._seal_soon(str(self._path("raw", d, part.ttl)), conn, state, cut)
        return len(cols)

    def _in_chunks(self, conn: sqlite3.Connection, late: list[tuple[int, int, str]]) -> set[tuple[int, int, str]]:
        """Which of the (series, ts, message id) keys ``late`` are sealed in chunks already (a row the
        chunk stores without its id has the one derived from it)."""
        by_series: dict[int, list[int]] = {}
        for sid, t, _ in late:
            by_series.setdefault(sid, []).append(t)
        present: set[tuple[int, int, str]] = set()
        for sid, times in by_series.items():
            for (blob,) in conn.execute("SELECT data FROM chunks WHERE series_id = ? AND t0 <= ? AND t1 >= ?",
                                        (sid, max(times), min(times))):
                ts, _, _, msgids = chunks.decode(blob)
                s = self._series_by_id(sid)
                present.update((sid, t, m if m is not None else derived_sample_id(
                    s.meter, s.resource_id, from_ms(t).isoformat(), s.source)) for t, m in zip(ts, msgids))
        return present

    def _seal(self, key: str, conn: sqlite3.Connection, state: RawState, cut: int) -> None:
        """Seal every head row before ``cut`` now (under the lock), unless a background seal of this
        partition is under way (the next pass takes what it leaves)."""
        if key in self._sealing:
            return
        started = time.monotonic()
        s = snapshot(conn, state.head, cut, self._series_by_id, state.legacy["h1"])
        if s is not None:
            pack(s)
            commit(conn, state.head, state.sealed, s)
            SEALS.labels(result="ok").inc()
            SEAL_SECONDS.observe(time.monotonic() - started)
        state.cut = max(state.cut, cut)

    def _seal_soon(self, key: str, conn: sqlite3.Connection, state: RawState, cut: int) -> None:
        """Start sealing in the background: the write returns while a second core packs the hour."""
        if key in self._sealing:
            return
        s = snapshot(conn, state.head, cut, self._series_by_id, state.legacy["h1"])
        if s is None:
            state.cut = max(state.cut, cut)
            return
        self._sealing[key] = self._sealer.submit(self._seal_job, key, conn, state, s)

    def _seal_job(self, key: str, conn: sqlite3.Connection, state: RawState, s: Sealing) -> None:
        started = time.monotonic()
        try:
            pack_elsewhere(s)
            with self.lock:
                # Closed, evicted or dropped meanwhile: its log still holds every row, nothing is lost,
                # and nothing was sealed (reopening the file seals it again).
                if self._open.get(key) is not conn or self._state.get(key) is not state:
                    return
                commit(conn, state.head, state.sealed, s)
                state.cut = max(state.cut, s.cut)
            SEALS.labels(result="ok").inc()
            SEAL_SECONDS.observe(time.monotonic() - started)
        except Exception:
            SEALS.labels(result="failed").inc()
            log.exception("sealing %s failed; its rows stay in the log and the next write retries", key)
        finally:
            with self.lock:
                self._sealing.pop(key, None)

    def _wait_seals(self, key: str | None = None) -> None:
        """Wait for background seals (all, or one partition's); never call it holding the lock."""
        while True:
            with self.lock:
                pending = [f for k, f in self._sealing.items() if key is None or k == key]
            if not pending:
                return
            for f in pending:
                f.result()

    def maintain(self, now: datetime | None = None) -> None:
        """Seal what is old enough by the wall clock too (series that stopped reporting, ended days),
        and give a fully sealed day's free pages back to the file system."""
        now_ms = int((now or datetime.now(timezone.utc)).timestamp() * 1000)
        self._wait_seals()
        with self.lock:
            for kind, ttl, d, _ in self._files():
                if kind != "raw":
                    continue
                end = day_start_ms(d) + DAY_MS
                cut = min((now_ms - GRACE_MS) // HOUR_MS * HOUR_MS, end)
                conn = self._conn("raw", d, ttl)
                key = str(self._path("raw", d, ttl))
                state = self._state[key]
                if state.head.min_ts is not None and state.head.min_ts < cut:
                    self._seal(key, conn, state, cut)
                    if cut == end:
                        # executescript steps it to the end: execute() frees a single page.
                        conn.executescript("PRAGMA main.incremental_vacuum;")
                state.cut = max(state.cut, cut)
            self._flush_ranges()

    def partitions(self) -> list[Partition]:
        self._wait_seals()  # sizes of settled files, not of a seal half written
        out = []
        for kind, ttl, d, p in self._files():
            size = sum(q.stat().st_size for q in (p, p.with_name(p.name + "-journal")) if q.exists())
            out.append(Partition(kind, d, ttl, size))
        return sorted(out, key=lambda p: (p.day, p.kind))

    def drop(self, p: Partition) -> None:
        path = self._path(p.kind, p.day, p.ttl)
        key = str(path)
        while True:
            self._wait_seals(key)
            with self.lock:
                if key in self._sealing:
                    continue  # a late write started another meanwhile: its rows must reach the roll-ups
                if p.kind == "raw" and path.exists() and any(self._path(k, p.day).exists() for k in ("m1", "h1")):
                    # Its open rows are in no roll-up yet, and the roll-ups outlive the raw data.
                    self._seal(key, self._conn("raw", p.day, p.ttl), self._state[key], day_start_ms(p.day) + DAY_MS)
                self._close_day(p.day)
                self._state.pop(key, None)
                for q in (path, path.with_name(path.name + "-journal")):
                    q.unlink(missing_ok=True)
                self._listing = None
                return

    def forget_series(self, before_ms: int) -> int:
        with self.lock:
            self._flush_ranges()
            self._by_id.clear()
            self._splitter.clear()
            return self.index.execute("DELETE FROM series WHERE last_ts < ?", (before_ms,)).rowcount

    def free_fraction(self) -> float | None:
        usage = shutil.disk_usage(self.folder)
        return usage.free / usage.total if usage.total else None

    def data_size(self) -> int:
        self._wait_seals()
        return sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())

    def close(self) -> None:
        self._wait_seals()
        self._sealer.shutdown(wait=True)
        with self.lock:
            self._flush_ranges()
            for conn in self._open.values():
                conn.close()
            self._open.clear()
            self._state.clear()
            self.index.close()
