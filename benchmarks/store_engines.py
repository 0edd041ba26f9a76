"""The embedded engine choice: SQLite (our backend) against DuckDB, storage layer only.

The Python write path in ``SampleStore.write`` is the same whichever engine is below it, so this feeds
both with the same prebuilt row tuples (1,000 series every 8.64 s, as in benchmarks/store.py): our
SQLite backend's ``_write`` + ``maintain`` against a DuckDB prototype doing the dedup (anti-join on the
batch's time range) and the per-minute roll-up upsert (ART primary key). The prototype does less than
our backend (no hour or per-meter roll-ups, no separate roll-up files), which favours DuckDB.

Usage:  pip install -e ".[bench]" && .venv/bin/python benchmarks/store_engines.py 1000000
"""
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from telemetry.meter.store.base import SeriesRow, TtlPolicy, hash64
from telemetry.meter.store.sqlite import SqliteSampleStore
n = int(sys.argv[1]); base = 1795132800000; step = 8640
per = n // 1000
sids = [hash64(f"s{r}".encode()) for r in range(1000)]
rows = [(sids[r], base + i * step, hash64(f"{r}-{i}".encode()), float((i * 7 + r * 13) % 1000) / 10.0, 0, None)
        for i in range(per) for r in range(1000)]
series = [SeriesRow(s, "cpu_util", "gauge", "%", f"res-{r}", "p", "u", "src", {}, base, base + per * step) for r, s in enumerate(sids)]
d = date(2026, 11, 20)
tmp = Path(tempfile.mkdtemp(prefix="storeperf-cmp-"))
st = SqliteSampleStore(tmp / "sqlite", TtlPolicy(7 * 86400))
t = time.perf_counter()
for i in range(0, n, 20000):
    st._write(series, {(7 * 86400, d): rows[i:i + 20000]})
st.maintain(__import__("datetime").datetime(2026, 11, 22, tzinfo=__import__("datetime").timezone.utc))
el = time.perf_counter() - t
print(f"sqlite storage: {n / el:,.0f} samples/s, {st.data_size() / n:.1f} bytes/sample")
folder = tmp / "duck"; folder.mkdir()
con = duckdb.connect(str(folder / "raw.duckdb"))
con.execute("CREATE TABLE hot(series_id BIGINT, ts BIGINT, mid BIGINT, volume DOUBLE, recorded BIGINT, msgid VARCHAR)")
con.execute("CREATE TABLE m1(series_id BIGINT, bucket BIGINT, count BIGINT, sum DOUBLE, sumsq DOUBLE, min DOUBLE, max DOUBLE, tmin BIGINT, tmax BIGINT, PRIMARY KEY (series_id, bucket))")
t = time.perf_counter()
for i in range(0, n, 20000):
    cols = [list(c) for c in zip(*rows[i:i + 20000])]
    con.execute("BEGIN")
    con.execute("CREATE OR REPLACE TEMP TABLE batch AS SELECT unnest(?::BIGINT[]) series_id, unnest(?::BIGINT[]) ts, unnest(?::BIGINT[]) mid, unnest(?::DOUBLE[]) volume, unnest(?::BIGINT[]) recorded, unnest(?::VARCHAR[]) msgid", cols)
    con.execute("DELETE FROM batch WHERE (series_id, ts, mid) IN (SELECT series_id, ts, mid FROM hot WHERE ts BETWEEN ? AND ?)", (min(cols[1]), max(cols[1])))
    con.execute("INSERT INTO hot SELECT * FROM batch")
    con.execute("""INSERT INTO m1 SELECT series_id, ts - ts % 60000, count(*), sum(volume), sum(volume*volume), min(volume), max(volume), min(ts), max(ts) FROM batch GROUP BY ALL
      ON CONFLICT DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum, sumsq = sumsq + excluded.sumsq, min = least(min, excluded.min), max = greatest(max, excluded.max), tmin = least(tmin, excluded.tmin), tmax = greatest(tmax, excluded.tmax)""")
    con.execute("COMMIT")
con.execute("CHECKPOINT")
el = time.perf_counter() - t
size = sum(f.stat().st_size for f in folder.iterdir())
print(f"duckdb storage (no h1, no per-meter roll-ups): {n / el:,.0f} samples/s, {size / n:.1f} bytes/sample")
def med(sql, *a):
    ts = []
    for _ in range(5):
        t = time.perf_counter(); con.execute(sql, a).fetchall(); ts.append(time.perf_counter() - t)
    return sorted(ts)[2] * 1000
print("duckdb A (m1, one series) %.1f ms" % med("SELECT bucket, sum(count), sum(sum), min(min), max(max) FROM m1 WHERE series_id = ? GROUP BY bucket", sids[7]))
print("duckdb B (m1, all series) %.1f ms" % med("SELECT bucket, sum(count), sum(sum), min(min), max(max) FROM m1 GROUP BY bucket"))
print("duckdb B (raw) %.1f ms" % med("SELECT ts - ts % 60000, count(*), sum(volume), min(volume), max(volume) FROM hot GROUP BY 1"))
con.close()
st.close()
shutil.rmtree(tmp)
