"""The embedded backend: SQLite files under ``<data_dir>/samples/``, a file per partition.

- ``index.db``: the series catalogue;
- ``raw-<ttl>-<YYYYMMDD>.db``: raw samples of one day and one TTL class;
- ``m1-<YYYYMMDD>.db`` / ``h1-<YYYYMMDD>.db``: per-minute / per-hour roll-ups of one day.

Expiry unlinks a file, so the space is back at once (no VACUUM, no dump and
restore). A raw file's connection attaches that day's roll-up files and the
rollback journal (not WAL) makes a commit across them atomic: raw rows and
the roll-ups they feed land together or not at all.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections import OrderedDict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from telemetry.meter.statistics import Partial
from telemetry.meter.store.base import (
    GRANULARITY, Kind, Partition, SampleRow, SampleStore, SeriesRow, TtlPolicy, days_between,
    decode_msgid, encode_msgid,
)
from telemetry.meter.store.sql import SERIES_COLUMNS, aggregate_select, sample_filters

FILE = re.compile(r"^(raw-(\d+)|m1|h1)-(\d{8})\.db$")
RAW_DDL = """CREATE TABLE IF NOT EXISTS {db}.samples(
  series_id INTEGER NOT NULL, ts INTEGER NOT NULL, mid INTEGER NOT NULL, volume REAL NOT NULL,
  recorded INTEGER NOT NULL, msgid BLOB, PRIMARY KEY (series_id, ts, mid)) WITHOUT ROWID"""
ROLLUP_DDL = """CREATE TABLE IF NOT EXISTS {db}.rollup(
  series_id INTEGER NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL, sum REAL NOT NULL,
  sumsq REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, tmin INTEGER NOT NULL, tmax INTEGER NOT NULL,
  PRIMARY KEY (series_id, bucket)) WITHOUT ROWID"""
ROLLUP_UPSERT = """INSERT INTO {db}.rollup SELECT series_id, ts - ts % {g}, count(*), sum(volume),
  sum(volume * volume), min(volume), max(volume), min(ts), max(ts) FROM temp.batch WHERE true GROUP BY 1, 2
  ON CONFLICT (series_id, bucket) DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum,
  sumsq = sumsq + excluded.sumsq, min = min(min, excluded.min), max = max(max, excluded.max),
  tmin = min(tmin, excluded.tmin), tmax = max(tmax, excluded.tmax)"""
MAX_OPEN = 48


def _stamp(d: date) -> str:
    return d.strftime("%Y%m%d")


class SqliteSampleStore(SampleStore):
    def __init__(self, folder: Path, ttl: TtlPolicy, rollup_ttl: dict[str, float] | None = None) -> None:
        super().__init__(ttl, rollup_ttl)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open: OrderedDict[str, sqlite3.Connection] = OrderedDict()
        self.index = sqlite3.connect(self.folder / "index.db", check_same_thread=False, isolation_level=None)
        self.index.execute("PRAGMA journal_mode=WAL")
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
        conn.execute("PRAGMA cache_size=-16000")
        if kind == "raw":
            conn.execute(RAW_DDL.format(db="main"))
            for rk in ("m1", "h1"):
                conn.execute("ATTACH DATABASE ? AS " + rk, (str(self._path(rk, d)),))  # type: ignore[arg-type]
                conn.execute(ROLLUP_DDL.format(db=rk))
        else:
            conn.execute(ROLLUP_DDL.format(db="main"))
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS sel(sid INTEGER PRIMARY KEY, gid INTEGER)")
        if kind == "raw":
            conn.execute(RAW_DDL.format(db="temp").replace("samples", "batch"))
        self._open[key] = conn
        while len(self._open) > MAX_OPEN:
            _, old = self._open.popitem(last=False)
            old.close()
        return conn

    def _close_day(self, d: date) -> None:
        for key in [k for k in self._open if k.endswith(f"-{_stamp(d)}.db")]:
            self._open.pop(key).close()

    def _files(self) -> list[tuple[Kind, int | None, date, Path]]:
        out: list[tuple[Kind, int | None, date, Path]] = []
        for p in self.folder.iterdir():
            m = FILE.match(p.name)
            if m:
                kind = "raw" if m.group(2) else m.group(1)
                out.append((kind, int(m.group(2)) if m.group(2) else None,  # type: ignore[arg-type]
                            datetime.strptime(m.group(3), "%Y%m%d").date(), p))
        return out

    # ---- primitives ------------------------------------------------------------------------------
    def _write(self, series: list[SeriesRow], rows: dict[tuple[int, date], list[SampleRow]]) -> int:
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
        for (ttl, d), batch in rows.items():
            conn = self._conn("raw", d, ttl)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM temp.batch")
                conn.executemany(
                    "INSERT OR IGNORE INTO temp.batch VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.series_id, r.ts, r.mid, r.volume, r.recorded, encode_msgid(r.msgid)) for r in batch],
                )
                # Only rows not stored yet go on, to the raw table and to the roll-ups alike.
                conn.execute("DELETE FROM temp.batch WHERE EXISTS (SELECT 1 FROM main.samples s WHERE "
                             "s.series_id = batch.series_id AND s.ts = batch.ts AND s.mid = batch.mid)")
                added = conn.execute("INSERT INTO main.samples SELECT * FROM temp.batch").rowcount
                if added:
                    for rk in ("m1", "h1"):
                        g = GRANULARITY[rk]
                        conn.execute(ROLLUP_UPSERT.format(db=rk, g=g))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            inserted += added
        return inserted

    def _series(self, equalities: dict[str, str]) -> list[SeriesRow]:
        where = " AND ".join(f"{k} = ?" for k in equalities)
        cur = self.index.execute(f"SELECT {', '.join(SERIES_COLUMNS)} FROM series" + (f" WHERE {where}" if where else ""),
                                 list(equalities.values()))
        return [SeriesRow(*r[:8], orjson.loads(r[8]), r[9], r[10]) for r in cur]

    def _load_sel(self, conn: sqlite3.Connection, sel: dict[int, int]) -> None:
        conn.execute("DELETE FROM temp.sel")
        conn.executemany("INSERT INTO temp.sel VALUES (?, ?)", sel.items())

    def _aggregate(self, kind: Kind, sel: dict[int, int], origin: int, period: int | None,
                   lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]]) -> dict[tuple[int, int], Partial]:
        cols, t = aggregate_select(kind, period)
        table = "main.samples s" if kind == "raw" else "main.rollup r"
        extra, extra_args = sample_filters(terms) if kind == "raw" else ("", [])
        rng, rng_args = "", []
        if lo is not None:
            rng, rng_args = rng + f" AND {t} >= ?", rng_args + [lo]
        if hi is not None:
            rng, rng_args = rng + f" AND {t} < ?", rng_args + [hi]
        alias = "s" if kind == "raw" else "r"
        sql = (f"SELECT {cols}, sel.gid FROM temp.sel CROSS JOIN {table} ON {alias}.series_id = sel.sid "
               f"WHERE 1{rng}{extra} GROUP BY b, sel.gid")
        args = ([origin, period] if period else []) + rng_args + extra_args
        out: dict[tuple[int, int], Partial] = {}
        for kind_, ttl, d, _ in self._select_files(kind, lo, hi):
            conn = self._conn(kind_, d, ttl)
            self._load_sel(conn, sel)
            for b, n, s, sq, mn, mx, tmin, tmax, gid in conn.execute(sql, args):
                key = (b, gid)
                p = Partial(n, s, sq, mn, mx, tmin, tmax)
                if key in out:
                    out[key].merge(p)
                else:
                    out[key] = p
        return out

    def _select_files(self, kind: Kind, lo: int | None, hi: int | None) -> list[tuple[Kind, int | None, date, Path]]:
        files = [f for f in self._files() if f[0] == kind]
        days = set(days_between(lo, hi, sorted({f[2] for f in files})))
        return sorted((f for f in files if f[2] in days), key=lambda f: f[2], reverse=True)

    def _fetch(self, sids: list[int], lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
               limit: int | None) -> list[SampleRow]:
        extra, extra_args = sample_filters(terms)
        rng, rng_args = "", []
        if lo is not None:
            rng, rng_args = " AND s.ts >= ?", [lo]
        if hi is not None:
            rng, rng_args = rng + " AND s.ts < ?", rng_args + [hi]
        sql = ("SELECT s.series_id, s.ts, s.mid, s.volume, s.recorded, s.msgid FROM temp.sel "
               f"CROSS JOIN main.samples s ON s.series_id = sel.sid WHERE 1{rng}{extra} ORDER BY s.ts DESC"
               + (" LIMIT ?" if limit else ""))
        args = rng_args + extra_args + ([limit] if limit else [])
        out: list[SampleRow] = []
        by_day: dict[date, list[tuple[Kind, int | None, date, Path]]] = {}
        for f in self._select_files("raw", lo, hi):
            by_day.setdefault(f[2], []).append(f)
        for d in sorted(by_day, reverse=True):
            day_rows: list[SampleRow] = []
            for _, ttl, _, _ in by_day[d]:
                conn = self._conn("raw", d, ttl)
                self._load_sel(conn, {sid: 0 for sid in sids})
                day_rows.extend(SampleRow(r[0], r[1], r[2], r[3], r[4], decode_msgid(r[5]))
                                for r in conn.execute(sql, args))
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
            for q in (path, path.with_name(path.name + "-journal")):
                q.unlink(missing_ok=True)

    def forget_series(self, before_ms: int) -> int:
        with self.lock:
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
            self.index.close()

