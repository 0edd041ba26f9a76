"""The PostgreSQL backend: native declarative partitioning, a partition per day.

``samples`` is partitioned by LIST (ttl class), each class by RANGE (ts) into
days; ``rollup_m1`` and ``rollup_h1`` by RANGE (bucket) into days. Expiry is
``DROP TABLE`` of a day partition, so the space returns at once (no bloat,
no VACUUM FULL). One statement inserts the raw rows with ``ON CONFLICT DO
NOTHING`` and feeds the roll-ups from its ``RETURNING`` rows only, so a
redelivered sample is counted once, atomically.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import orjson
import psycopg

from telemetry.meter.statistics import Partial
from telemetry.meter.store.base import (
    DAY_MS, GRANULARITY, Kind, Partition, RowTuple, SampleRow, SampleStore, SeriesRow, TtlPolicy, day_start_ms, series_row,
)
from telemetry.meter.store.sql import SERIES_COLUMNS, aggregate_select, sample_filters

CHILD = re.compile(r"^(?:samples_t(\d+)|rollup_(m1|h1))_d(\d{8})$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id bigint PRIMARY KEY, meter text NOT NULL, counter_type text NOT NULL,
  counter_unit text NOT NULL, resource_id text NOT NULL, project_id text, user_id text, source text NOT NULL,
  metadata text NOT NULL, first_ts bigint NOT NULL, last_ts bigint NOT NULL);
CREATE INDEX IF NOT EXISTS series_meter ON series (meter);
CREATE INDEX IF NOT EXISTS series_resource ON series (resource_id);
CREATE TABLE IF NOT EXISTS samples (series_id bigint NOT NULL, ts bigint NOT NULL, mid bigint NOT NULL,
  volume double precision NOT NULL, recorded bigint NOT NULL, msgid text, ttl integer NOT NULL,
  PRIMARY KEY (series_id, ts, mid, ttl)) PARTITION BY LIST (ttl);
CREATE TABLE IF NOT EXISTS rollup_m1 (series_id bigint NOT NULL, bucket bigint NOT NULL, count bigint NOT NULL,
  sum double precision NOT NULL, sumsq double precision NOT NULL, min double precision NOT NULL,
  max double precision NOT NULL, tmin bigint NOT NULL, tmax bigint NOT NULL, PRIMARY KEY (series_id, bucket))
  PARTITION BY RANGE (bucket);
CREATE TABLE IF NOT EXISTS rollup_h1 (LIKE rollup_m1 INCLUDING ALL) PARTITION BY RANGE (bucket);
"""
ROLLUP = """{name} AS (INSERT INTO rollup_{kind} SELECT series_id, ts - ts %% {g}, count(*), sum(volume),
  sum(CASE WHEN abs(volume) < 1e-150 THEN 0 ELSE volume * volume END), min(volume), max(volume), min(ts), max(ts)
  FROM ins GROUP BY 1, 2
  ON CONFLICT (series_id, bucket) DO UPDATE SET count = rollup_{kind}.count + excluded.count,
  sum = rollup_{kind}.sum + excluded.sum, sumsq = rollup_{kind}.sumsq + excluded.sumsq,
  min = LEAST(rollup_{kind}.min, excluded.min), max = GREATEST(rollup_{kind}.max, excluded.max),
  tmin = LEAST(rollup_{kind}.tmin, excluded.tmin), tmax = GREATEST(rollup_{kind}.tmax, excluded.tmax)
  RETURNING 1)"""
WRITE = (
    "WITH b AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::float8[], %s::bigint[], "
    "%s::text[]) AS b(series_id, ts, mid, volume, recorded, msgid)), "
    "ins AS (INSERT INTO samples SELECT series_id, ts, mid, volume, recorded, msgid, %s FROM b "
    "ON CONFLICT DO NOTHING RETURNING series_id, ts, volume), "
    + ROLLUP.format(name="m1", kind="m1", g=GRANULARITY["m1"]) + ", "
    + ROLLUP.format(name="h1", kind="h1", g=GRANULARITY["h1"])
    + " SELECT count(*) FROM ins"
)


def _stamp(d: date) -> str:
    return d.strftime("%Y%m%d")


class PostgresSampleStore(SampleStore):
    def __init__(self, url: str, ttl: TtlPolicy, rollup_ttl: dict[str, float] | None = None) -> None:
        super().__init__(ttl, rollup_ttl)
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.conn = psycopg.connect(self.url, autocommit=True)
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(727001)")  # two servers starting at once
            self.conn.execute(SCHEMA)
        self._made: set[str] = set()

    def describe(self) -> str:
        info = self.conn.info
        return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"

    def _ensure(self, ttl: int, d: date) -> None:
        lo, hi = day_start_ms(d), day_start_ms(d) + DAY_MS
        parent = f"samples_t{ttl}"
        wanted = [
            (parent, f"CREATE TABLE IF NOT EXISTS {parent} PARTITION OF samples FOR VALUES IN ({ttl}) "
                     "PARTITION BY RANGE (ts)"),
            (f"{parent}_d{_stamp(d)}", f"CREATE TABLE IF NOT EXISTS {parent}_d{_stamp(d)} PARTITION OF {parent} "
                                       f"FOR VALUES FROM ({lo}) TO ({hi})"),
        ] + [(f"rollup_{k}_d{_stamp(d)}", f"CREATE TABLE IF NOT EXISTS rollup_{k}_d{_stamp(d)} PARTITION OF "
                                          f"rollup_{k} FOR VALUES FROM ({lo}) TO ({hi})") for k in ("m1", "h1")]
        for name, ddl in wanted:
            if name not in self._made:
                with self.conn.transaction():
                    self.conn.execute("SELECT pg_advisory_xact_lock(727001)")
                    self.conn.execute(ddl)
                self._made.add(name)

    def _write(self, series: list[SeriesRow], rows: dict[tuple[int, date], list[RowTuple]]) -> int:
        for ttl, d in rows:
            self._ensure(ttl, d)
        inserted = 0
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO series SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], "
                "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[]) "
                "ON CONFLICT (id) DO UPDATE SET first_ts = LEAST(series.first_ts, excluded.first_ts), "
                "last_ts = GREATEST(series.last_ts, excluded.last_ts)",
                [list(c) for c in zip(*[
                    (s.id, s.meter, s.counter_type, s.counter_unit, s.resource_id, s.project_id, s.user_id,
                     s.source, orjson.dumps(s.metadata, option=orjson.OPT_SORT_KEYS).decode(), s.first_ts,
                     s.last_ts) for s in sorted(series, key=lambda s: s.id)])],
            )
            for (ttl, _), batch in rows.items():
                cur.execute(WRITE, [list(c) for c in zip(*batch)] + [ttl])
                inserted += cur.fetchone()[0]  # type: ignore[index]
        return inserted

    def _series(self, equalities: dict[str, str]) -> list[SeriesRow]:
        where = " AND ".join(f"{k} = %s" for k in equalities)
        cur = self.conn.execute(
            f"SELECT {', '.join(SERIES_COLUMNS)} FROM series" + (f" WHERE {where}" if where else ""),
            list(equalities.values()),
        )
        return [series_row(r) for r in cur]

    @staticmethod
    def _range(t: str, lo: int | None, hi: int | None) -> tuple[str, list[int]]:
        sql, args = "", []
        if lo is not None:
            sql, args = f" AND {t} >= %s::bigint", [lo]
        if hi is not None:
            sql, args = sql + f" AND {t} < %s::bigint", args + [hi]
        return sql, args

    def _aggregate(self, kind: Kind, sel: dict[int, int], origin: int, period: int | None,
                   lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
                   meter: str | None = None) -> dict[tuple[int, int], Partial]:
        cols, t = aggregate_select(kind, period, "%s::bigint")
        table = "samples s" if kind == "raw" else f"rollup_{kind} r"
        alias = "s" if kind == "raw" else "r"
        extra, extra_args = sample_filters(terms, "%s") if kind == "raw" else ("", [])
        rng, rng_args = self._range(t, lo, hi)
        sql = (f"SELECT {cols}, sel.gid FROM unnest(%s::bigint[], %s::int[]) AS sel(sid, gid) "
               f"JOIN {table} ON {alias}.series_id = sel.sid WHERE true{rng}{extra} GROUP BY b, sel.gid")
        args = ([origin, period] if period else []) + [list(sel), list(sel.values())] + rng_args + extra_args
        with self.conn.transaction():
            rows = self.conn.execute(sql, args).fetchall()
        return {(b, gid): Partial(int(n), s, sq, mn, mx, tmin, tmax) for b, n, s, sq, mn, mx, tmin, tmax, gid in rows}

    def _fetch(self, sids: list[int], lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
               limit: int | None) -> list[SampleRow]:
        extra, extra_args = sample_filters(terms, "%s")
        rng, rng_args = self._range("s.ts", lo, hi)
        sql = ("SELECT s.series_id, s.ts, s.mid, s.volume, s.recorded, s.msgid FROM samples s "
               f"WHERE s.series_id = ANY(%s::bigint[]){rng}{extra} ORDER BY s.ts DESC"
               + (" LIMIT %s" if limit else ""))
        args = [sids] + rng_args + extra_args + ([limit] if limit else [])
        return [SampleRow(*r) for r in self.conn.execute(sql, args)]

    def partitions(self) -> list[Partition]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                "WHERE (p.relname LIKE 'samples_t%%' OR p.relname IN ('rollup_m1', 'rollup_h1')) "
                "AND p.relnamespace = current_schema()::regnamespace"
            ).fetchall()
        out = []
        for name, size in rows:
            m = CHILD.match(name)
            if m:
                kind: Kind = "raw" if m.group(1) else m.group(2)  # type: ignore[assignment]
                out.append(Partition(kind, datetime.strptime(m.group(3), "%Y%m%d").date(),
                                     int(m.group(1)) if m.group(1) else None, int(size)))
        return sorted(out, key=lambda p: (p.day, p.kind))

    def drop(self, p: Partition) -> None:
        name = f"samples_t{p.ttl}_d{_stamp(p.day)}" if p.kind == "raw" else f"rollup_{p.kind}_d{_stamp(p.day)}"
        with self.lock, self.conn.transaction():
            self.conn.execute(f"DROP TABLE IF EXISTS {name}")
        self._made.discard(name)

    def forget_series(self, before_ms: int) -> int:
        with self.lock, self.conn.transaction():
            return self.conn.execute("DELETE FROM series WHERE last_ts < %s", (before_ms,)).rowcount

    def data_size(self) -> int:
        with self.lock:
            base = self.conn.execute("SELECT pg_total_relation_size('series')").fetchone()[0]  # type: ignore[index]
        return int(base) + sum(p.size for p in self.partitions())

    def close(self) -> None:
        with self.lock:
            self.conn.close()

