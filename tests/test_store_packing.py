"""The embedded store's column-wise sealing and its write-ahead log.

``packing.encode_chunks`` must write exactly what the reference coder
``chunks.encode`` writes, series by series and hour by hour, and its
roll-ups must equal a direct computation; the head's log must survive a
kill -9 at any moment without losing or doubling an acknowledged sample.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from telemetry.meter.store import chunks
from telemetry.meter.store.head import wal_blob, wal_columns
from telemetry.meter.store.packing import HOUR_MS, Columns, encode_chunks, regroup, rollup, sort_rows


def _columns(rng: random.Random, n: int) -> Columns:
    base = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS
    sid, ts, vol = [], [], []
    kinds = [lambda: rng.randint(0, 100) / 10, lambda: rng.random(), lambda: float(rng.randint(-5, 5)),
             lambda: rng.choice([float("inf"), -0.0, 1e-300, 1e300, 0.1 + 0.2]), lambda: round(rng.random(), 6)]
    for _ in range(n):
        s = rng.choice([-(2**63), -7, 3, 2**62 + 11])
        sid.append(s)
        t = base + rng.randint(0, 3 * HOUR_MS - 1)
        ts.append(t - t % 1000 if rng.random() < 0.7 else t)  # mostly whole seconds: regular deltas
        vol.append(kinds[(s & 0xFF) % len(kinds)]() if rng.random() < 0.9 else rng.choice(kinds)())
    ids = [f"id-{i}" if rng.random() < 0.1 else None for i in range(n)]
    rec = [1_700_000_000_000 + rng.randint(0, 5) for _ in range(n)]
    return Columns(np.array(sid, np.int64), np.array(ts, np.int64), np.array(vol, np.float64),
                   np.array(rec, np.int64), ids)


@pytest.mark.parametrize("seed", range(6))
def test_encode_chunks_is_byte_for_byte_the_reference_coder(seed: int) -> None:
    c = sort_rows(_columns(random.Random(seed), 3000))
    got = encode_chunks(c)
    want, i = [], 0
    sid, ts, vol, rec = c.sid.tolist(), c.ts.tolist(), c.vol.tolist(), c.rec.tolist()
    while i < len(c):  # the reference: one chunk per series and hour, in sorted order
        j = i
        while j < len(c) and sid[j] == sid[i] and ts[j] // HOUR_MS == ts[i] // HOUR_MS:
            j += 1
        want.append((sid[i], ts[i], ts[j - 1], j - i, chunks.encode(ts[i:j], vol[i:j], rec[i:j], c.ids[i:j])))
        i = j
    assert [g[:4] for g in got] == [w[:4] for w in want]
    assert [g[4] for g in got] == [w[4] for w in want]
    for g in got:  # and it decodes bit for bit
        t, v, _, _ = chunks.decode(g[4])
        assert len(t) == g[3] and t[0] == g[1] and t[-1] == g[2]
    assert len({math.copysign(1, v) for _, _, _, _, b in got for v in chunks.decode(b)[1] if v == 0}) == 2


def test_rollups_equal_a_direct_computation() -> None:
    rng = random.Random(9)
    c = _columns(rng, 4000)
    c = sort_rows(Columns(c.sid, c.ts, np.array([rng.uniform(-50, 50) for _ in range(len(c))]), c.rec, c.ids))
    for g in (60_000, 3_600_000):
        r = rollup(c, g)
        want: dict[tuple[int, int], list[float]] = {}
        for s, t, v in zip(c.sid.tolist(), c.ts.tolist(), c.vol.tolist()):
            want.setdefault((s, t - t % g), []).append(v)
        rows = {(k, b): (n, s, sq, lo, hi) for k, b, n, s, sq, lo, hi, _, _ in r.rows(False)}
        assert set(rows) == set(want)
        for key, vs in want.items():
            n, s, sq, lo, hi = rows[key]
            assert (n, lo, hi) == (len(vs), min(vs), max(vs))
            assert s == pytest.approx(sum(vs)) and sq == pytest.approx(sum(v * v for v in vs))
        compact = r.rows(True)
        assert all(row[4:7] == (None, None, None) and row[8] is None for row in compact if row[2] == 1)
        # Merged per "meter" (here: the sign of the series id), counts and sums add up.
        merged = regroup(r, (r.key < 0).astype(np.int64))
        assert int(merged.count.sum()) == len(c) and float(merged.sum.sum()) == pytest.approx(float(c.vol.sum()))


def test_wal_blobs_round_trip() -> None:
    c = _columns(random.Random(3), 500)
    back = wal_columns(wal_blob(c))
    assert back.ids == c.ids
    for a, b in ((back.sid, c.sid), (back.ts, c.ts), (back.rec, c.rec)):
        assert a.tolist() == b.tolist()
    assert back.vol.tobytes() == c.vol.tobytes()


WRITER = textwrap.dedent("""
    import sys
    from datetime import datetime, timedelta, timezone
    from pathlib import Path
    from telemetry.meter.store.base import TtlPolicy
    from telemetry.meter.store.sqlite import SqliteSampleStore
    from telemetry.models import Sample

    folder, t0 = Path(sys.argv[1]), datetime.fromisoformat(sys.argv[2])
    store = SqliteSampleStore(folder, TtlPolicy(7 * 86400))
    i = 0
    while True:
        batch = [Sample(counter_name="cpu_util", counter_type="gauge", counter_unit="%", counter_volume=float(j % 97),
                        resource_id=f"res-{j % 20}", timestamp=t0 + timedelta(seconds=j),
                        **({"message_id": f"m-{j}"} if j % 3 == 0 else {}))
                 for j in range(i, i + 500)]
        # Every third batch is resent whole first: a redelivery must not count twice.
        if i and (i // 500) % 3 == 0:
            store.write([Sample.model_validate(s.model_dump()) for s in prev])
        store.write(batch)
        prev = batch
        i += 500
        print(i, flush=True)
""")


def test_kill_9_while_writing_and_sealing_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """A writer crossing several hours (so it seals as it goes) is killed at random moments and
    restarted on the same folder; afterwards every acknowledged sample is there exactly once, in the
    raw data and the roll-ups alike."""
    from telemetry.meter.query import SampleQuery
    from telemetry.meter.store.base import TtlPolicy
    from telemetry.meter.store.sqlite import SqliteSampleStore

    t0 = (datetime.now(timezone.utc) - timedelta(hours=20)).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(1)
    acked = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), t0.isoformat()],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        stop = rng.randint(10, 40)
        for n, line in enumerate(proc.stdout):
            acked = max(acked, int(line))
            if n >= stop:
                proc.kill()
                break
        proc.wait()
    store = SqliteSampleStore(tmp_path, TtlPolicy(7 * 86400))
    q = SampleQuery(meter="cpu_util")
    listed = [r.ts for _, r in store.samples_sync(q)]
    assert len(listed) == len(set(listed)) >= acked  # nothing doubled, nothing acknowledged lost
    want = set(range(int(t0.timestamp() * 1000), int(t0.timestamp() * 1000) + acked * 1000, 1000))
    assert want <= set(listed)
    total = len(listed)
    for kind in ("raw", "m1", "h1"):
        (row,) = store.statistics_sync(q, force=kind)
        assert row.count == total, kind
    store.maintain(datetime.now(timezone.utc) + timedelta(days=1))  # seal the rest: still exact
    for kind in ("raw", "m1", "h1"):
        (row,) = store.statistics_sync(q, force=kind)
        assert row.count == total, kind
    store.close()


def test_minute_blobs_hold_the_minute_rollups() -> None:
    from telemetry.meter.store.packing import minute_blobs, minute_rollups

    rng = random.Random(4)
    c = _columns(rng, 3000)
    c = sort_rows(Columns(c.sid, c.ts, np.array([rng.uniform(-9, 9) for _ in range(len(c))]), c.rec, c.ids))
    r = rollup(c, 60_000)
    want = {(row[0], row[1]): row[2:] for row in r.rows(False)}
    got = {}
    for sid, hour, blob in minute_blobs(r):
        assert hour % HOUR_MS == 0
        for row in minute_rollups([(hour, blob)]).rows(False):
            assert hour <= row[1] < hour + HOUR_MS
            got[(sid, row[1])] = row[2:]
    assert got == want  # exact: the floats are stored as they are


def test_a_sealed_day_gives_its_log_pages_back(tmp_path: Path) -> None:
    """The log's blobs are deleted as hours are sealed; once the day is over, the raw file keeps no free
    pages (they go back to the file system), so bytes on disk are the chunks' alone."""
    import sqlite3

    from telemetry.meter.store.base import TtlPolicy
    from telemetry.meter.store.sqlite import SqliteSampleStore
    from telemetry.models import Sample

    from telemetry.metrics import REGISTRY

    def seals() -> float:
        return REGISTRY.get_sample_value("telemetry_store_seals_total", {"result": "ok"}) or 0.0

    before = seals()
    day = (datetime.now(timezone.utc) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    store = SqliteSampleStore(tmp_path, TtlPolicy(7 * 86400))
    for h in range(24):
        store.write([Sample(counter_name="cpu_util", counter_type="gauge", counter_volume=float(i % 50),
                            resource_id=f"res-{i % 30}", timestamp=day + timedelta(hours=h, seconds=i * 2))
                     for i in range(1500)])
    store.maintain(day + timedelta(days=1, hours=1))
    assert seals() - before >= 2  # in the background as hours passed, and the rest of the day at the end
    (raw,) = tmp_path.glob("raw-*.db")
    c = sqlite3.connect(raw)
    assert c.execute("SELECT count(*) FROM wal").fetchone() == (0,)
    assert c.execute("PRAGMA freelist_count").fetchone() == (0,)
    c.close()
    store.close()


def test_sealing_falls_back_to_this_process_when_the_worker_dies(tmp_path: Path, caplog) -> None:
    """A worker process that died (OOM killer, a stray kill) costs a warning, not the hour: packing
    runs in the daemon's own process, and the next seal starts a new worker."""
    import logging
    import os
    import signal

    from telemetry.meter.store import sealing
    from telemetry.meter.store.base import TtlPolicy
    from telemetry.meter.store.sqlite import SqliteSampleStore
    from telemetry.models import Sample

    store = SqliteSampleStore(tmp_path, TtlPolicy(7 * 86400))
    # Yesterday's 08:00 to 11:00, one day's partition: a day's file seals an hour when a later hour of
    # the same day arrives. From six hours ago, between 03:00 and 06:00 UTC the fourth hour fell on
    # the next day, sealed nothing, and the test failed by the clock.
    t0 = (datetime.now(timezone.utc) - timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)

    def hour(h: int) -> list[Sample]:
        return [Sample(counter_name="cpu_util", counter_type="gauge", counter_volume=float(i), resource_id=f"r{i % 5}",
                       timestamp=t0 + timedelta(hours=h, seconds=i * 12)) for i in range(300)]

    store.write(hour(0))
    store.write(hour(1))  # seals hour 0 in the background: the worker now exists
    store.maintain(t0)  # waits for it
    pool = sealing._pool
    assert pool is not None
    for pid in list(pool._processes):  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="telemetry.meter.store.sealing"):
        store.write(hour(2))  # seals hour 1: the dead worker is noticed, packing happens here
        store.maintain(t0)
    assert "sealing worker unavailable" in caplog.text
    store.write(hour(3))
    store.maintain(t0 + timedelta(days=2))
    assert sealing._pool is not None and sealing._pool is not pool  # a fresh worker took over
    from telemetry.meter.query import SampleQuery

    for kind in ("raw", "m1", "h1"):
        (row,) = store.statistics_sync(SampleQuery(meter="cpu_util"), force=kind)
        assert row.count == 1200, kind
    store.close()
