"""The embedded backend's SQL: table layouts, roll-up upserts, and the upgrade of first-layout files."""

from __future__ import annotations

import sqlite3

HOT_DDL = """CREATE TABLE IF NOT EXISTS {db}.{table}(
  series_id INTEGER NOT NULL, ts INTEGER NOT NULL, mid INTEGER NOT NULL, volume REAL NOT NULL,
  recorded INTEGER NOT NULL, msgid TEXT, PRIMARY KEY (series_id, ts, mid)) WITHOUT ROWID"""
CHUNK_DDL = """CREATE TABLE IF NOT EXISTS main.chunks(
  series_id INTEGER NOT NULL, t0 INTEGER NOT NULL, t1 INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL)"""
CHUNK_INDEX = "CREATE INDEX IF NOT EXISTS main.chunks_series ON chunks(series_id, t0, t1)"
#: Clustered by series: one resource over a day is one range scan (query A). Clustering by time
#: instead measured the same size and made A a probe per bucket, 10x slower; "every series" queries
#: are answered by the per-meter roll-ups below.
#: A roll-up of a single sample (the usual case when samples come less than once a minute, as Ceilometer's
#: 600 s polling does) stores NULL for sumsq, min, max and tmax: they equal sum**2, sum, sum and tmin, and a
#: NULL costs one header byte instead of 8, so such a row is ~40 bytes instead of ~70.
ROLLUP_DDL = """CREATE TABLE IF NOT EXISTS {db}.rollup(
  series_id INTEGER NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL, sum REAL NOT NULL,
  sumsq REAL, min REAL, max REAL, tmin INTEGER NOT NULL, tmax INTEGER,
  PRIMARY KEY (series_id, bucket)) WITHOUT ROWID"""
#: Merging an upserted partial into a stored one (either may be the compact one-sample form).
_MERGE = """count = count + excluded.count, sum = sum + excluded.sum,
  sumsq = coalesce(sumsq, sum * sum) + coalesce(excluded.sumsq, excluded.sum * excluded.sum),
  min = min(coalesce(min, sum), coalesce(excluded.min, excluded.sum)),
  max = max(coalesce(max, sum), coalesce(excluded.max, excluded.sum)),
  tmin = min(tmin, excluded.tmin), tmax = max(coalesce(tmax, tmin), coalesce(excluded.tmax, excluded.tmin))"""
#: Roll-up files written before the compact form have NOT NULL columns: they get full rows, merged plainly.
_LEGACY_MERGE = """count = count + excluded.count, sum = sum + excluded.sum,
  sumsq = sumsq + excluded.sumsq, min = min(min, excluded.min), max = max(max, excluded.max),
  tmin = min(tmin, excluded.tmin), tmax = max(tmax, excluded.tmax)"""
_UPSERT = "INSERT INTO {db}.{table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ({key}, bucket) DO UPDATE SET "
ROLLUP_UPSERT = _UPSERT.replace("{table}", "rollup").replace("{key}", "series_id") + _MERGE
LEGACY_UPSERT = _UPSERT.replace("{table}", "rollup").replace("{key}", "series_id") + _LEGACY_MERGE
METER_UPSERT = _UPSERT.replace("{table}", "meter_rollup").replace("{key}", "meter") + _MERGE
#: Per-series minute roll-ups, one blob per series and hour (``packing.minute_blobs``); the ``rollup`` table
#: of a minute file keeps only rows written before them (still read).
MINUTES_DDL = ("CREATE TABLE IF NOT EXISTS {db}.minutes(series_id INTEGER NOT NULL, hour INTEGER NOT NULL, "
               "data BLOB NOT NULL)")
MINUTES_INDEX = "CREATE INDEX IF NOT EXISTS {db}.minutes_series ON minutes(series_id, hour)"
#: The raw file's log of rows not sealed yet (``head.py``): a blob per written batch.
WAL_DDL = "CREATE TABLE IF NOT EXISTS main.wal(seq INTEGER PRIMARY KEY, data BLOB NOT NULL)"
#: Partials of roll-up rows ``r`` (either form).
ROLLUP_PARTIAL = ("sum(r.count), sum(r.sum), sum(coalesce(r.sumsq, r.sum * r.sum)), min(coalesce(r.min, r.sum)), "
                  "max(coalesce(r.max, r.sum)), min(r.tmin), max(coalesce(r.tmax, r.tmin))")
#: The same partials per meter, all its series together: "every resource of cpu_util, minute by minute"
#: reads 1,440 rows a day instead of 1,440 per resource.
METER_DDL = ROLLUP_DDL.replace("rollup(", "meter_rollup(").replace("series_id INTEGER", "meter TEXT").replace(
    "(series_id, bucket)", "(meter, bucket)")


def upgrade_raw(conn: sqlite3.Connection) -> None:
    """A raw file from before hot rows and chunks: its one ``samples`` table becomes hot rows
    (16-byte UUID message ids back to their text) and is sealed by the next maintenance pass."""
    if not conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'samples'").fetchone():
        return
    h = "hex(msgid)"
    text = (f"lower(substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-' || substr({h}, 13, 4) || '-' || "
            f"substr({h}, 17, 4) || '-' || substr({h}, 21))")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR IGNORE INTO main.hot SELECT series_id, ts, mid, volume, recorded, CASE WHEN "
                 f"typeof(msgid) = 'blob' THEN {text} ELSE msgid END FROM main.samples")
    conn.execute("DROP TABLE main.samples")
    conn.execute("COMMIT")
