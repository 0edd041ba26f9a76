"""The sample store: one suite, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
import statistics as pystats
from datetime import datetime, timedelta, timezone

import pytest

from store_support import gauge, hour_start, make_store, pg_database, series_samples, store  # noqa: F401
from telemetry.meter.query import SampleQueryError, QueryTerm, SampleQuery
from telemetry.meter.retention import PARTITIONS_SHED, expire, guard_free_space
from telemetry.meter.store.base import day_of


def q(meter: str = "cpu_util", *terms: tuple[str, str, object]) -> SampleQuery:
    return SampleQuery([QueryTerm(field=f, op=op, value=v) for f, op, v in terms], meter=meter)


def test_writes_are_idempotent_on_message_id(store) -> None:
    t0 = hour_start() - timedelta(hours=2)
    batch = series_samples("cpu_util", 3, t0, timedelta(seconds=30), 40)
    first = store.write(batch)
    assert (first.inserted, first.duplicates) == (120, 0)
    again = store.write(batch[:50] + batch[:50])  # a redelivery, itself with duplicates inside
    assert (again.inserted, again.duplicates) == (0, 100)
    mixed = store.write(batch[100:] + [gauge("cpu_util", 5, "res-new", t0)])
    assert mixed.inserted == 1
    for kind in ("raw", "m1", "h1"):  # roll-ups did not double-count the redelivery either
        (row,) = store.statistics_sync(q(), force=kind)
        assert row.count == 121, kind
        assert row.sum == pytest.approx(sum(s.counter_volume for s in batch) + 5)


def test_statistics_match_a_direct_computation(store) -> None:
    t0 = hour_start() - timedelta(hours=3)
    batch = series_samples("cpu_util", 4, t0, timedelta(seconds=45), 200)
    store.write(batch)
    vols = [s.counter_volume for s in batch]
    (row,) = store.statistics_sync(q(), aggregates=["avg", "sum", "min", "max", "count", "stddev"])
    assert row.count == len(vols) and row.sum == pytest.approx(sum(vols))
    assert row.min == min(vols) and row.max == max(vols) and row.avg == pytest.approx(sum(vols) / len(vols))
    assert row.aggregate["stddev"] == pytest.approx(pystats.pstdev(vols))
    assert row.period == 0 and row.duration == pytest.approx(199 * 45)
    # Period buckets: Ceilometer starts them at the query start.
    start, end = t0, t0 + timedelta(hours=2)
    rows = store.statistics_sync(q("cpu_util", ("timestamp", "ge", start.isoformat()),
                                   ("timestamp", "lt", end.isoformat())), period=1800)
    assert [r.period_start for r in rows] == [start + timedelta(minutes=30 * i) for i in range(4)]
    for r in rows:
        inside = [s.counter_volume for s in batch if r.period_start <= s.timestamp < r.period_end]
        assert (r.count, r.max, r.min) == (len(inside), max(inside), min(inside))
        assert r.avg == pytest.approx(sum(inside) / len(inside)) and r.period == 1800
        assert r.duration_start >= r.period_start and r.duration_end < r.period_end


def test_groupby_and_queries_on_any_field(store) -> None:
    t0 = hour_start() - timedelta(hours=1)
    batch = series_samples("cpu_util", 6, t0, timedelta(minutes=1), 30)
    store.write(batch + series_samples("memory", 2, t0, timedelta(minutes=1), 5))

    def expect(pred):
        return sorted(s.counter_volume for s in batch if pred(s))

    by_res = store.statistics_sync(q(), groupby=["resource_id"])
    assert {r.groupby["resource_id"]: r.count for r in by_res} == {f"res-{i}": 30 for i in range(6)}
    by_proj = store.statistics_sync(q(), groupby=["project_id", "user_id"])
    assert len(by_proj) == 6 and all(set(r.groupby) == {"project_id", "user_id"} for r in by_proj)
    by_flavor = store.statistics_sync(q(), groupby=["resource_metadata.flavor.name"], aggregates=["sum"])
    got = {r.groupby["resource_metadata.flavor.name"]: r.sum for r in by_flavor}
    assert got == pytest.approx({
        "m1.small": sum(expect(lambda s: s.resource_metadata["flavor"]["name"] == "m1.small")),
        "m1.large": sum(expect(lambda s: s.resource_metadata["flavor"]["name"] == "m1.large")),
    })
    cases = [
        (("resource_metadata.vcpus", "ge", "2"), lambda s: s.resource_metadata["vcpus"] >= 2),
        (("resource_metadata.vcpus", "lt", "2"), lambda s: s.resource_metadata["vcpus"] < 2),
        (("resource_metadata.flavor.name", "ne", "m1.small"),
         lambda s: s.resource_metadata["flavor"]["name"] != "m1.small"),
        (("project_id", "eq", "proj-1"), lambda s: s.project_id == "proj-1"),
        (("resource_id", "gt", "res-3"), lambda s: s.resource_id > "res-3"),
        (("counter_volume", "le", "40"), lambda s: s.counter_volume <= 40),
        (("counter_volume", "gt", "40"), lambda s: s.counter_volume > 40),
    ]
    for term, pred in cases:
        rows = store.statistics_sync(q("cpu_util", term))
        assert (rows[0].count if rows else 0) == len(expect(pred)), term
        assert rows[0].max == max(expect(pred)), term
    with pytest.raises(SampleQueryError):
        store.statistics_sync(q(), groupby=["counter_volume"])


def test_rollups_answer_with_the_same_results_as_raw_samples(store) -> None:
    t0 = hour_start() - timedelta(hours=4)
    store.write(series_samples("cpu_util", 5, t0 + timedelta(seconds=7), timedelta(seconds=37), 350))
    aligned = q("cpu_util", ("timestamp", "ge", t0.isoformat()),
                ("timestamp", "lt", (t0 + timedelta(hours=4)).isoformat()))
    from telemetry.meter.rollups import choose_source

    assert choose_source(aligned, 3_600_000, aligned.start) == "h1"
    assert choose_source(aligned, 300_000, aligned.start) == "m1"
    assert choose_source(aligned, 90_000, aligned.start) == "raw"
    one = q("cpu_util", ("timestamp", "ge", t0.isoformat()),
            ("timestamp", "lt", (t0 + timedelta(hours=4)).isoformat()), ("resource_id", "eq", "res-3"))
    cases = [(aligned, groupby) for groupby in ([], ["resource_id"], ["resource_metadata.flavor.name"])]
    # First with the newest hour still open (SQLite: in the head), then with everything sealed.
    for _ in range(2):
        for period in (None, 60, 300, 3600):
            for query, groupby in cases + [(one, [])]:  # one resource (query A's shape) too
                raw = store.statistics_sync(query, period, groupby, ["avg", "min", "max", "count", "sum", "stddev"],
                                            force="raw")
                auto = store.statistics_sync(query, period, groupby, ["avg", "min", "max", "count", "sum", "stddev"])
                assert len(raw) == len(auto) and raw, (period, groupby)
                for a, b in zip(raw, auto):
                    assert (a.period_start, a.groupby, a.count, a.min, a.max) == (b.period_start, b.groupby, b.count,
                                                                                  b.min, b.max)
                    assert (a.duration_start, a.duration_end) == (b.duration_start, b.duration_end)
                    for f in ("avg", "sum", "stddev"):
                        assert a.aggregate[f] == pytest.approx(b.aggregate[f], rel=1e-9, abs=1e-9)
        store.maintain(hour_start() + timedelta(days=2))


def test_sample_listing_is_newest_first_and_filtered(store) -> None:
    t0 = hour_start() - timedelta(hours=1)
    batch = series_samples("cpu_util", 3, t0, timedelta(seconds=10), 20)
    batch.append(gauge("cpu_util", 1.5, "res-x", t0, message_id="6f1a3c0e-1111-4c1b-9a52-1234567890ab"))
    store.write(batch)
    rows = store.samples_sync(q(), limit=5)
    assert len(rows) == 5 and [r.ts for _, r in rows] == sorted((r.ts for _, r in rows), reverse=True)
    rows = store.samples_sync(q("cpu_util", ("resource_id", "eq", "res-x")))
    from telemetry.meter.store.base import stored_message_id

    assert [stored_message_id(r, s) for s, r in rows] == ["6f1a3c0e-1111-4c1b-9a52-1234567890ab"]
    ids = {stored_message_id(r, s) for s, r in store.samples_sync(q())}
    assert ids == {s.message_id for s in batch}  # derivable ids are not stored, yet come back intact
    assert store.samples_sync(q("cpu_util", ("message_id", "eq", batch[3].message_id)))[0][1].volume == \
        batch[3].counter_volume


def _size(store) -> int:
    return sum(p.size for p in store.partitions())


def test_a_week_of_samples_expires_and_the_space_comes_back(make_store) -> None:
    now = hour_start()
    week = series_samples("cpu_util", 20, now - timedelta(days=7), timedelta(minutes=20), 7 * 72)
    ttl, rollups = 7 * 86400, {"m1": 7 * 86400, "h1": 7 * 86400}
    full = make_store(ttl, rollups=rollups)
    full.write(week)
    before = _size(full)
    later = now + timedelta(days=5)  # from then on only the last two days are live
    live_from = day_of(int((later - timedelta(days=7)).timestamp() * 1000))
    dropped = expire(full, later)
    assert dropped and all(p.day < live_from for p in dropped)
    after = _size(full)
    live = make_store(ttl, rollups=rollups)
    live.write([s for s in week if s.timestamp.date() >= live_from])
    assert after < before * 0.6
    assert after == pytest.approx(_size(live), rel=0.15)  # back to the size of the live data alone
    if hasattr(full, "folder"):  # SQLite: the data folder itself shrank
        folder = sum(f.stat().st_size for f in full.folder.iterdir())
        assert folder < before * 0.6
    (row,) = full.statistics_sync(q())
    assert row.count == sum(1 for s in week if s.timestamp.date() >= live_from)


def test_per_meter_ttl_uses_its_own_partitions(make_store) -> None:
    now = hour_start()
    st = make_store(7 * 86400, meters={"cpu*": 86400}, rollups={"m1": 30 * 86400, "h1": 30 * 86400})
    st.write(series_samples("cpu_util", 2, now - timedelta(hours=20), timedelta(hours=1), 20)
             + series_samples("memory", 2, now - timedelta(hours=20), timedelta(hours=1), 20))
    assert {p.ttl for p in st.partitions() if p.kind == "raw"} == {86400, 7 * 86400}
    expire(st, now + timedelta(days=2))
    assert {p.ttl for p in st.partitions() if p.kind == "raw"} == {7 * 86400}
    assert st.statistics_sync(q("memory"), force="raw")[0].count == 40
    assert st.statistics_sync(q("cpu_util"), force="raw") == []
    assert st.statistics_sync(q("cpu_util"))[0].count == 40  # the roll-ups, kept longer, still answer
    late = st.write([gauge("cpu_util", 1, "r", now - timedelta(days=3))])
    assert late.expired == 1 and late.inserted == 0


def test_free_space_guard_sheds_oldest_partitions_loudly(make_store, caplog) -> None:
    now = hour_start()
    st = make_store()
    st.write(series_samples("cpu_util", 2, now - timedelta(days=4), timedelta(hours=6), 17))
    raw_days = sorted(p.day for p in st.partitions() if p.kind == "raw")
    levels = iter([0.01, 0.01, 0.5])  # two drops bring the disk back above the floor
    before = PARTITIONS_SHED.labels(kind="raw")._value.get()
    with caplog.at_level(logging.ERROR, logger="telemetry.meter.retention"):
        shed = guard_free_space(st, 0.05, now, free=lambda: next(levels))
    assert [(p.kind, p.day) for p in shed] == [("raw", raw_days[0]), ("raw", raw_days[1])]
    assert PARTITIONS_SHED.labels(kind="raw")._value.get() == before + 2
    assert sum("SHED raw partition" in r.message for r in caplog.records) == 2
    assert guard_free_space(st, 0.05, now, free=lambda: 0.5) == []
    # Nothing of today is ever shed, even when the disk stays full.
    guard_free_space(st, 0.05, now, free=lambda: 0.0)
    assert {p.day for p in st.partitions()} == {now.date()}


def test_bad_queries_name_the_field(store) -> None:
    with pytest.raises(ValueError, match="cannot query on field 'colour'"):
        QueryTerm(field="colour", value="x")
    with pytest.raises(SampleQueryError, match="timestamp"):
        q("cpu_util", ("timestamp", "ne", "2024-01-01T00:00:00"))
    with pytest.raises(SampleQueryError, match="period"):
        store.statistics_sync(q(), period=0)


def test_sealed_data_still_dedups_and_round_trips(store) -> None:
    """Once raw rows are sealed into compressed chunks (SQLite; a no-op on PostgreSQL), a redelivery
    still counts once, kept and derived message ids come back, and message_id queries still find rows."""
    t0 = hour_start() - timedelta(hours=5)
    batch = series_samples("cpu_util", 3, t0, timedelta(seconds=50), 200)
    odd = [gauge("cpu_util", v, "res-odd", t0 + timedelta(seconds=i, microseconds=250), message_id=f"ceilo-{i}")
           for i, v in enumerate((1e-300, 0.1 + 0.2, 3.14159265358979, float("inf"), 12.5))]
    assert store.write(batch + odd).inserted == 605
    store.maintain(hour_start() + timedelta(days=2))  # everything sealed where the backend seals
    again = store.write(batch[::7] + odd[:2] + [gauge("cpu_util", 7, "res-0", t0 + timedelta(seconds=1))])
    assert (again.inserted, again.duplicates) == (1, len(batch[::7]) + 2)
    store.maintain(hour_start() + timedelta(days=2))
    for kind in ("raw", "m1", "h1"):
        (row,) = store.statistics_sync(q("cpu_util", ("resource_id", "ne", "res-odd")), force=kind)
        assert row.count == 601 and row.sum == pytest.approx(sum(s.counter_volume for s in batch) + 7), kind
    from telemetry.meter.store.base import stored_message_id

    listed = {stored_message_id(r, s): r.volume for s, r in store.samples_sync(q())}
    assert len(listed) == 606
    for s in batch + odd:
        got = listed[s.message_id]
        assert got == s.counter_volume and str(got) == str(s.counter_volume)  # bit for bit
    hit = store.samples_sync(q("cpu_util", ("message_id", "eq", batch[123].message_id)))
    assert [r.volume for _, r in hit] == [batch[123].counter_volume]
    assert store.samples_sync(q("cpu_util", ("message_id", "eq", "ceilo-4")))[0][1].volume == 12.5


def test_sqlite_files_from_before_chunks_are_upgraded(tmp_path) -> None:
    """Files written by the first embedded layout (one ``samples`` table with 16-byte UUID ids, roll-up
    files without per-meter roll-ups) read back the same after an upgrade (the rows, already rolled up,
    become chunks only), and still deduplicate."""
    import sqlite3
    import uuid

    from telemetry.meter.store.base import TtlPolicy, stored_message_id
    from telemetry.meter.store.packing import minute_rollups
    from telemetry.meter.store.sqlite import SqliteSampleStore

    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    batch = series_samples("cpu_util", 3, t0, timedelta(seconds=10), 20)
    batch.append(gauge("cpu_util", 2.5, "res-x", t0, message_id=str(uuid.uuid4())))
    batch.append(gauge("cpu_util", 3.5, "res-x", t0 + timedelta(seconds=1), message_id="not-a-uuid"))
    st = SqliteSampleStore(tmp_path, TtlPolicy(7 * 86400))
    st.write(batch)
    before = (st.statistics_sync(q(), force="m1"), sorted((stored_message_id(r, s), r.volume)
                                                           for s, r in st.samples_sync(q())))
    rows = [(r.series_id, r.ts, r.mid, r.volume, r.recorded, r.msgid) for _, r in st.samples_sync(q())]
    st.maintain(datetime.now(timezone.utc) + timedelta(days=1))  # the roll-ups an old file would have had
    st.close()
    for f in tmp_path.glob("*.db"):
        c = sqlite3.connect(f, isolation_level=None)
        if f.name.startswith("raw-"):
            c.execute("DROP TABLE chunks")
            c.execute("DROP TABLE wal")
            c.execute("CREATE TABLE samples(series_id INTEGER, ts INTEGER, mid INTEGER, volume REAL, "
                      "recorded INTEGER, msgid BLOB, PRIMARY KEY (series_id, ts, mid)) WITHOUT ROWID")
            old = [r[:5] + ((uuid.UUID(r[5]).bytes if r[5] and r[5] != "not-a-uuid" else r[5]),) for r in rows]
            c.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)", old)
        elif f.name[:3] in ("m1-", "h1-"):
            c.execute("ALTER TABLE rollup RENAME TO r0")
            c.execute("CREATE TABLE rollup(series_id INTEGER NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT "
                      "NULL, sum REAL NOT NULL, sumsq REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, tmin "
                      "INTEGER NOT NULL, tmax INTEGER NOT NULL, PRIMARY KEY (series_id, bucket)) WITHOUT ROWID")
            c.execute("INSERT INTO rollup SELECT series_id, bucket, count, sum, coalesce(sumsq, sum * sum), "
                      "coalesce(min, sum), coalesce(max, sum), tmin, coalesce(tmax, tmin) FROM r0")
            if f.name.startswith("m1-"):  # minute roll-ups were rows then, not blobs per hour
                for sid, hour, blob in c.execute("SELECT series_id, hour, data FROM minutes").fetchall():
                    r = minute_rollups([(hour, blob)])
                    c.executemany("INSERT INTO rollup VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  [(sid,) + row[1:] for row in r.rows(False)])
                c.execute("DROP TABLE minutes")
            c.execute("DROP TABLE r0")
            c.execute("DROP TABLE meter_rollup")
        c.close()
    st = SqliteSampleStore(tmp_path, TtlPolicy(7 * 86400))
    after = (st.statistics_sync(q(), force="m1"), sorted((stored_message_id(r, s), r.volume)
                                                          for s, r in st.samples_sync(q())))
    assert after == before and len(after[1]) == 62
    st.maintain(datetime.now(timezone.utc) + timedelta(days=1))  # sealed into chunks, still the same
    assert sorted((stored_message_id(r, s), r.volume) for s, r in st.samples_sync(q())) == before[1]
    extra = gauge("cpu_util", 4.0, "res-0", t0 + timedelta(seconds=5))
    assert st.write(batch + [extra]).inserted == 1  # old roll-up files still take (only) new rows
    for kind in ("raw", "m1", "h1"):
        (row,) = st.statistics_sync(q(), force=kind)
        assert (row.count, row.sum) == (63, pytest.approx(sum(s.counter_volume for s in batch) + 4.0)), kind
    st.close()


def test_newest_samples_of_a_long_range_come_first(store) -> None:
    """A limited listing over many sealed hours returns exactly the newest samples."""
    t0 = hour_start() - timedelta(hours=20)
    batch = series_samples("cpu_util", 4, t0, timedelta(minutes=3), 380)
    store.write(batch)
    store.maintain(hour_start() + timedelta(days=2))
    got = [(s.resource_id, r.ts) for s, r in store.samples_sync(q(), limit=8)]  # two whole time steps
    want = sorted(((s.resource_id, int(s.timestamp.timestamp() * 1000)) for s in batch), key=lambda x: -x[1])[:8]
    assert sorted(got, key=lambda x: (-x[1], x[0])) == sorted(want, key=lambda x: (-x[1], x[0]))
