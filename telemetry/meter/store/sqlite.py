"""The embedded backend: SQLite files under ``<data_dir>/samples/``, a file per partition.

- ``index.db``: the series catalogue;
- ``raw-<ttl>-<YYYYMMDD>.db``: raw samples of one day and one TTL class, in two
  tables: ``hot`` (one row per sample, keyed by series, time and message id
  hash: the open, still-changing part) and ``chunks`` (a series' samples of one
  hour packed and compressed by ``chunks.py`` once the hour is over: ~1-8
  bytes a sample instead of ~60);
- ``m1-<YYYYMMDD>.db`` / ``h1-<YYYYMMDD>.db``: per-minute / per-hour roll-ups of one day.

Expiry unlinks a file, so the space is back at once (no VACUUM, no dump and
restore). A raw file's connection attaches that day's roll-up files and the
rollback journal (not WAL) makes a commit across them atomic: raw rows and
the roll-ups they feed land together or not at all.

Durability: ``synchronous=NORMAL``. A write that returned survives the
process being killed (kill -9: the pages are in the OS cache and the journal
protects the files); it needs fsync only against power loss or a kernel
crash, where NORMAL may lose the last batches but not the database. The bus
redelivers what was not acknowledged and writes are idempotent, so that
window costs at most a redelivery, never a double count.

Dedup: a batch is inserted into ``hot`` with ``INSERT OR IGNORE``; when every
row was new (the common case) the roll-ups are fed from the batch directly.
Otherwise (a redelivery) the insert is undone to a savepoint, the rows already
stored are removed from the batch, and only the rest goes on. A row older than
what a series has sealed into chunks is first checked against those chunks.
"""

from __future__ import annotations

import heapq
import re
import shutil
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from itertools import chain
from pathlib import Path
from typing import Any, Iterator

import orjson

from telemetry.meter.query import OPS, QueryError
from telemetry.meter.statistics import Partial, from_ms
from telemetry.meter.store import chunks
from telemetry.meter.store.base import (
    DAY_MS, GRANULARITY, Kind, Partition, RowTuple, SampleRow, SampleStore, SeriesRow, TtlPolicy, day_start_ms,
    days_between, derived_sample_id, hash64,
)
from telemetry.meter.store.sql import SERIES_COLUMNS
from telemetry.meter.store.sqlite_sql import (
    CHUNK_DDL, CHUNK_INDEX, HOT_DDL, LEGACY_UPSERT, METER_DDL, METER_UPSERT, ROLLUP_DDL, ROLLUP_PARTIAL, ROLLUP_UPSERT,
    upgrade_raw,
)

FILE = re.compile(r"^(raw-(\d+)|m1|h1)-(\d{8})\.db$")
HOUR_MS = 3_600_000
#: Rows stay in ``hot`` until their series has moved this far past the end of their hour.
GRACE_MS = 10 * 60_000
MAX_OPEN = 48


def _stamp(d: date) -> str:
    return d.strftime("%Y%m%d")


@dataclass
class RawState:
    """What the writer remembers of an open raw partition."""

    sealed: dict[int, int] = field(default_factory=dict)  # series -> last ts sealed into chunks
    clock: int = 0  # newest sample time written
    cut: int = 0  # every hot row before this is sealed
    upserts: dict[str, str] = field(default_factory=dict)  # roll-up file -> its upsert statement


def _sample_filter(terms: list[tuple[str, str, Any]]) -> tuple[list[tuple[Any, Any]], str | None]:
    """Per-sample terms evaluated in Python over decoded rows: (volume predicates, message id or None)."""
    vol: list[tuple[Any, Any]] = []
    msgid = None
    for f, op, v in terms:
        if f == "counter_volume":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise QueryError(f"counter_volume needs a number, got {v!r}")
            vol.append((OPS[op], float(v)))
        elif f == "message_id":
            if op != "eq":
                raise QueryError("message_id supports only op eq")
            msgid = str(v)
    return vol, msgid


class SqliteSampleStore(SampleStore):
    def __init__(self, folder: Path, ttl: TtlPolicy, rollup_ttl: dict[str, float] | None = None) -> None:
        super().__init__(ttl, rollup_ttl)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open: OrderedDict[str, sqlite3.Connection] = OrderedDict()
        self._state: dict[str, RawState] = {}
        self._by_id: dict[int, SeriesRow] = {}
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
        conn.execute("PRAGMA cache_size=-32000")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file: sealing frees pages
        if kind == "raw":
            fresh_rollups = {rk: not self._path(rk, d).exists() for rk in ("m1", "h1")}
            state = self._state.setdefault(key, RawState())
            conn.execute(HOT_DDL.format(db="main", table="hot"))
            conn.execute(CHUNK_DDL)
            conn.execute(CHUNK_INDEX)
            for rk in ("m1", "h1"):
                conn.execute("ATTACH DATABASE ? AS " + rk, (str(self._path(rk, d)),))  # type: ignore[arg-type]
                conn.execute(f"PRAGMA {rk}.synchronous=NORMAL")
                conn.execute(ROLLUP_DDL.format(db=rk))
                self._meter_table(conn, rk, fresh_rollups[rk])
                legacy = any(c[1] == "sumsq" and c[3] for c in conn.execute(f"PRAGMA {rk}.table_info(rollup)"))
                state.upserts[rk] = (LEGACY_UPSERT if legacy else ROLLUP_UPSERT).format(db=rk, g=GRANULARITY[rk])
            conn.execute(HOT_DDL.format(db="temp", table="batch"))
            upgrade_raw(conn)
            state.sealed = dict(conn.execute("SELECT series_id, max(t1) FROM chunks GROUP BY series_id").fetchall())
        else:
            conn.execute(ROLLUP_DDL.format(db="main"))
            self._meter_table(conn, "main", False)
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS sel(sid INTEGER PRIMARY KEY, gid INTEGER)")
        self._open[key] = conn
        while len(self._open) > MAX_OPEN:
            _, old = self._open.popitem(last=False)
            old.close()
        return conn

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

    def _close_day(self, d: date) -> None:
        for key in [k for k in self._open if k.endswith(f"-{_stamp(d)}.db")]:
            self._open.pop(key).close()
            self._state.pop(key, None)

    def _files(self) -> list[tuple[Kind, int | None, date, Path]]:
        out: list[tuple[Kind, int | None, date, Path]] = []
        for p in self.folder.iterdir():
            m = FILE.match(p.name)
            if m:
                kind = "raw" if m.group(2) else m.group(1)
                out.append((kind, int(m.group(2)) if m.group(2) else None,  # type: ignore[arg-type]
                            datetime.strptime(m.group(3), "%Y%m%d").date(), p))
        return out

    def _series_by_id(self, sid: int) -> SeriesRow:
        s = self._by_id.get(sid)
        if s is None:
            if len(self._by_id) > 200_000:
                self._by_id.clear()
            cur = self.index.execute(f"SELECT {', '.join(SERIES_COLUMNS)} FROM series WHERE id = ?", (sid,))
            r = cur.fetchone()
            s = self._by_id[sid] = SeriesRow(*r[:8], orjson.loads(r[8]), r[9], r[10])
        return s

    # ---- writing ----------------------------------------------------------------------------------
    def _write(self, series: list[SeriesRow], rows: dict[tuple[int, date], list[RowTuple]]) -> int:
        self.index.execute("BEGIN")
        self.index.executemany(
            f"INSERT INTO series VALUES ({', '.join('?' * len(SERIES_COLUMNS))}) ON CONFLICT (id) DO UPDATE SET "
            "first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts)",
            [(s.id, s.meter, s.counter_type, s.counter_unit, s.resource_id, s.project_id, s.user_id, s.source,
              orjson.dumps(s.metadata, option=orjson.OPT_SORT_KEYS).decode(), s.first_ts, s.last_ts)
             for s in series],
        )
        self.index.execute("COMMIT")
        inserted = 0
        meters = [(s.id, s.meter) for s in series]
        for (ttl, d), batch in rows.items():
            conn = self._conn("raw", d, ttl)
            conn.execute("DELETE FROM temp.smeter")
            conn.executemany("INSERT INTO temp.smeter VALUES (?, ?)", meters)
            state = self._state[str(self._path("raw", d, ttl))]
            conn.execute("BEGIN IMMEDIATE")
            try:
                added = self._insert(conn, state, batch)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            inserted += added
            state.clock = max(state.clock, max(r[1] for r in batch))
            cut = min((state.clock - GRACE_MS) // HOUR_MS * HOUR_MS, day_start_ms(d) + DAY_MS)
            if cut > state.cut:
                self._seal(conn, state, cut)
        return inserted

    def _insert(self, conn: sqlite3.Connection, state: RawState, batch: list[RowTuple]) -> int:
        sealed = state.sealed
        if sealed:
            late = [r for r in batch if r[1] <= sealed.get(r[0], -1)]
            if late:
                gone = self._in_chunks(conn, late)
                batch = [r for r in batch if (r[0], r[1], r[5]) not in gone]
                if not batch:
                    return 0
        conn.execute("DELETE FROM temp.batch")
        conn.executemany("INSERT OR IGNORE INTO temp.batch VALUES (?, ?, ?, ?, ?, ?)", batch)
        conn.execute("SAVEPOINT ins")
        added = conn.execute("INSERT OR IGNORE INTO main.hot SELECT * FROM temp.batch").rowcount
        if added != len(batch):
            # A redelivery: keep only the rows not stored yet, for the raw table and the roll-ups alike.
            conn.execute("ROLLBACK TO ins")
            conn.execute("DELETE FROM temp.batch WHERE EXISTS (SELECT 1 FROM main.hot s WHERE "
                         "s.series_id = batch.series_id AND s.ts = batch.ts AND s.mid = batch.mid)")
            added = conn.execute("INSERT INTO main.hot SELECT * FROM temp.batch").rowcount
        conn.execute("RELEASE ins")
        if added:
            for rk in ("m1", "h1"):
                conn.execute(state.upserts[rk])
                conn.execute(METER_UPSERT.format(db=rk, g=GRANULARITY[rk]))
        return added

    def _in_chunks(self, conn: sqlite3.Connection, late: list[RowTuple]) -> set[tuple[int, int, str | None]]:
        """Keys (series, ts, kept msgid) of ``late`` rows already sealed into chunks.

        A derivable id (msgid None) is a function of series and time, so equal
        (series, ts, None) means the same message; a kept id compares as text.
        """
        by_series: dict[int, list[int]] = {}
        for r in late:
            by_series.setdefault(r[0], []).append(r[1])
        present: set[tuple[int, int, str | None]] = set()
        for sid, times in by_series.items():
            for (blob,) in conn.execute("SELECT data FROM chunks WHERE series_id = ? AND t0 <= ? AND t1 >= ?",
                                        (sid, max(times), min(times))):
                ts, _, _, msgids = chunks.decode(blob)
                present.update((sid, t, m) for t, m in zip(ts, msgids))
        return present

    def _seal(self, conn: sqlite3.Connection, state: RawState, cut: int) -> None:
        """Pack every hot row older than ``cut`` into per-series, per-hour chunks (one transaction)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute("SELECT series_id, ts, volume, recorded, msgid FROM main.hot WHERE ts < ? "
                               "ORDER BY series_id, ts, mid", (cut,))
            out: list[tuple[int, int, int, int, bytes]] = []
            key: tuple[int, int] | None = None
            cols: tuple[list[Any], ...] = ([], [], [], [])
            for sid, ts, vol, rec, msgid in cur:
                k = (sid, ts // HOUR_MS)
                if k != key:
                    if key is not None:
                        out.append((key[0], cols[0][0], cols[0][-1], len(cols[0]), chunks.encode(*cols)))
                    key, cols = k, ([], [], [], [])
                cols[0].append(ts)
                cols[1].append(vol)
                cols[2].append(rec)
                cols[3].append(msgid)
            if key is not None:
                out.append((key[0], cols[0][0], cols[0][-1], len(cols[0]), chunks.encode(*cols)))
            if out:
                conn.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)", out)
                conn.execute("DELETE FROM main.hot WHERE ts < ?", (cut,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        for sid, _, t1, _, _ in out:
            if t1 > state.sealed.get(sid, -1):
                state.sealed[sid] = t1
        state.cut = cut

    def maintain(self, now: datetime | None = None) -> None:
        """Seal what is old enough by the wall clock too (series that stopped reporting, ended days),
        and give a fully sealed day's free pages back to the file system."""
        now_ms = int((now or datetime.now(timezone.utc)).timestamp() * 1000)
        with self.lock:
            for kind, ttl, d, _ in self._files():
                if kind != "raw":
                    continue
                end = day_start_ms(d) + DAY_MS
                cut = min((now_ms - GRACE_MS) // HOUR_MS * HOUR_MS, end)
                conn = self._conn("raw", d, ttl)
                state = self._state[str(self._path("raw", d, ttl))]
                if conn.execute("SELECT 1 FROM main.hot WHERE ts < ? LIMIT 1", (cut,)).fetchone():
                    self._seal(conn, state, cut)
                    if cut == end:
                        conn.execute("PRAGMA main.incremental_vacuum").fetchall()  # runs a step per row
                state.cut = max(state.cut, cut)

    # ---- reading ----------------------------------------------------------------------------------
    def _series(self, equalities: dict[str, str]) -> list[SeriesRow]:
        where = " AND ".join(f"{k} = ?" for k in equalities)
        cur = self.index.execute(f"SELECT {', '.join(SERIES_COLUMNS)} FROM series" + (f" WHERE {where}" if where else ""),
                                 list(equalities.values()))
        return [SeriesRow(*r[:8], orjson.loads(r[8]), r[9], r[10]) for r in cur]

    def _load_sel(self, conn: sqlite3.Connection, sel: dict[int, int]) -> None:
        conn.execute("DELETE FROM temp.sel")
        conn.executemany("INSERT INTO temp.sel VALUES (?, ?)", sel.items())

    def _raw(self, conn: sqlite3.Connection, lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
             newest: int | None = None) -> Iterator[tuple[int, int, float, int, str | None, int]]:
        """(series, ts, volume, recorded, kept msgid, gid) of the selected series (``temp.sel``) in range,
        from hot rows and decoded chunks alike, filtered by the per-sample terms.

        ``newest=N``: the caller keeps only the N newest rows, so chunks are read newest first and no
        chunk is decoded once N rows newer than its end have been found."""
        vol_terms, want_id = _sample_filter(terms)
        lo_, hi_ = (lo if lo is not None else -(2**63)), (hi if hi is not None else 2**63 - 1)
        hot = conn.execute("SELECT s.series_id, s.ts, s.volume, s.recorded, s.msgid, sel.gid FROM temp.sel "
                           "CROSS JOIN main.hot s ON s.series_id = sel.sid WHERE s.ts >= ? AND s.ts < ?", (lo_, hi_))
        packed = conn.execute("SELECT c.series_id, c.data, sel.gid, c.t1 FROM temp.sel CROSS JOIN main.chunks c "
                              "ON c.series_id = sel.sid WHERE c.t0 < ? AND c.t1 >= ?"
                              + (" ORDER BY c.t1 DESC" if newest else ""), (hi_, lo_))
        top: list[int] = []  # min-heap of the ``newest`` latest times yielded so far

        def unpacked() -> Iterator[tuple[int, int, float, int, str | None, int]]:
            for sid, blob, gid, t1 in packed:
                if newest and len(top) >= newest and top[0] > t1:
                    return
                ts, vols, recs, msgids = chunks.decode(blob)
                for t, v, r, m in zip(ts, vols, recs, msgids):
                    if lo_ <= t < hi_:
                        yield sid, t, v, r, m, gid

        for sid, t, v, r, m, gid in chain(hot, unpacked()):  # lazily: unpacked() stops early on ``top``
            if vol_terms and not all(op(v, x) for op, x in vol_terms):
                continue
            if want_id is not None:
                if m is None:
                    s = self._series_by_id(sid)
                    m_full = derived_sample_id(s.meter, s.resource_id, from_ms(t).isoformat(), s.source)
                else:
                    m_full = m
                if m_full != want_id:
                    continue
            if newest:
                if len(top) < newest:
                    heapq.heappush(top, t)
                elif t > top[0]:
                    heapq.heapreplace(top, t)
            yield sid, t, v, r, m, gid

    def _aggregate(self, kind: Kind, sel: dict[int, int], origin: int, period: int | None,
                   lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
                   meter: str | None = None) -> dict[tuple[int, int], Partial]:
        out: dict[tuple[int, int], Partial] = {}
        if kind == "raw":
            for _, ttl, d, _ in self._select_files("raw", lo, hi):
                conn = self._conn("raw", d, ttl)
                self._load_sel(conn, sel)
                for _, t, v, _, _, gid in self._raw(conn, lo, hi, terms):
                    key = ((t - origin) // period if period else 0, gid)
                    p = out.get(key)
                    if p is None:
                        out[key] = Partial(1, v, v * v, v, v, t, t)
                    else:
                        p.count += 1
                        p.sum += v
                        p.sumsq += v * v
                        if v < p.min:
                            p.min = v
                        if v > p.max:
                            p.max = v
                        if t < p.tmin:
                            p.tmin = t
                        if t > p.tmax:
                            p.tmax = t
            return out
        g = GRANULARITY[kind]
        cols = ROLLUP_PARTIAL
        single = len(set(sel.values())) == 1
        gid0 = next(iter(sel.values()))
        group = "r.bucket" if single else "r.bucket, sel.gid"
        for kind_, ttl, d, _ in self._select_files(kind, lo, hi):
            conn = self._conn(kind_, d, ttl)
            first = max(lo if lo is not None else 0, day_start_ms(d))
            first -= first % g
            last = min(hi if hi is not None else 2**62, day_start_ms(d) + DAY_MS)
            if meter is not None:
                sql = (f"SELECT r.bucket, {cols}, 0 FROM main.meter_rollup r WHERE r.bucket >= ? AND r.bucket < ? "
                       "AND r.meter = ? GROUP BY r.bucket")
                rows = conn.execute(sql, (first, last, meter))
            else:
                self._load_sel(conn, sel)
                rows = conn.execute(f"SELECT r.bucket, {cols}, sel.gid FROM temp.sel CROSS JOIN main.rollup r "
                                    f"ON r.series_id = sel.sid WHERE r.bucket >= ? AND r.bucket < ? GROUP BY {group}",
                                    (first, last))
            for bucket, n, s, sq, mn, mx, tmin, tmax, gid in rows:
                key = ((bucket - origin) // period if period else 0, gid if not single else gid0)
                p = out.get(key)
                if p is None:
                    out[key] = Partial(n, s, sq, mn, mx, tmin, tmax)
                else:
                    p.merge(Partial(n, s, sq, mn, mx, tmin, tmax))
        return out

    def _select_files(self, kind: Kind, lo: int | None, hi: int | None) -> list[tuple[Kind, int | None, date, Path]]:
        files = [f for f in self._files() if f[0] == kind]
        days = set(days_between(lo, hi, sorted({f[2] for f in files})))
        return sorted((f for f in files if f[2] in days), key=lambda f: f[2], reverse=True)

    def _fetch(self, sids: list[int], lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
               limit: int | None) -> list[SampleRow]:
        out: list[SampleRow] = []
        by_day: dict[date, list[tuple[Kind, int | None, date, Path]]] = {}
        for f in self._select_files("raw", lo, hi):
            by_day.setdefault(f[2], []).append(f)
        for d in sorted(by_day, reverse=True):
            day_rows: list[SampleRow] = []
            for _, ttl, _, _ in by_day[d]:
                conn = self._conn("raw", d, ttl)
                self._load_sel(conn, {sid: 0 for sid in sids})
                for sid, t, v, r, m, _ in self._raw(conn, lo, hi, terms, newest=limit):
                    if m is None:
                        s = self._series_by_id(sid)
                        mid = hash64(derived_sample_id(s.meter, s.resource_id, from_ms(t).isoformat(),
                                                       s.source).encode())
                    else:
                        mid = hash64(m.encode())
                    day_rows.append(SampleRow(sid, t, mid, v, r, m))
            day_rows.sort(key=lambda r: r.ts, reverse=True)
            out.extend(day_rows)
            if limit and len(out) >= limit:
                return out[:limit]
        return out

    def partitions(self) -> list[Partition]:
        out = []
        for kind, ttl, d, p in self._files():
            size = sum(q.stat().st_size for q in (p, p.with_name(p.name + "-journal")) if q.exists())
            out.append(Partition(kind, d, ttl, size))
        return sorted(out, key=lambda p: (p.day, p.kind))

    def drop(self, p: Partition) -> None:
        with self.lock:
            self._close_day(p.day)
            path = self._path(p.kind, p.day, p.ttl)
            self._state.pop(str(path), None)
            for q in (path, path.with_name(path.name + "-journal")):
                q.unlink(missing_ok=True)

    def forget_series(self, before_ms: int) -> int:
        with self.lock:
            self._by_id.clear()
            self._series_cache.clear()
            return self.index.execute("DELETE FROM series WHERE last_ts < ?", (before_ms,)).rowcount

    def free_fraction(self) -> float | None:
        usage = shutil.disk_usage(self.folder)
        return usage.free / usage.total if usage.total else None

    def data_size(self) -> int:
        return sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())

    def close(self) -> None:
        with self.lock:
            for conn in self._open.values():
                conn.close()
            self._open.clear()
            self._state.clear()
            self.index.close()
