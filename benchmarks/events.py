"""Event store benchmark: insert rate and query latency over 1 million events, against DuckDB.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/events.py [--events 1000000] [--url postgresql://postgres@127.0.0.1/test]

``--url postgresql://...`` measures the PostgreSQL event store instead (in a new
schema, dropped after) against the same DuckDB peer.

The peer is DuckDB (the other in-process engine the issue names), loaded with
the same rows in the same run: bulk-loaded from a CSV file it reads itself
(its fastest path; the CSV writing is counted), queried with the equivalent
SQL. DuckDB's FTS extension is downloaded at run time, which this machine
cannot do, so its phrase query is an ILIKE scan, which is what it would do
without that extension.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from pipeline import database_cpu, events_store

from telemetry.events.backend import open_event_store
from telemetry.events.rows import COLUMNS, Row
from telemetry.events.times import to_micros

COMPONENTS = ["nova", "neutron", "glance", "keystone", "cinder", "heat", "ceilometer", "swift"]
LEVELS = ["INFO"] * 14 + ["DEBUG"] * 4 + ["WARNING", "ERROR"]
TEMPLATES = [
    "Claim successful on node cn{n}.example.org",
    "GET /v2/images/{u} HTTP/1.1 status: 200 len: {n} time: 0.{n}",
    "Took {n}.21 seconds to build instance.",
    "Lock compute_resources acquired by ResourceTracker waited 0.{n}s",
    "Final resource view: name=cn{n} phys_ram={n}MB used_ram={n}MB",
    "Authorization failed for token {u}",
    "Instance {u} spawned successfully on hypervisor",
]
PHRASE = "Instance failed to spawn"


def make_rows(count: int, seed: int = 7, random_ids: bool = False, span: float = 3 * 86400) -> tuple[list[Row], str]:
    """Oslo-like events over ``span`` seconds (three days), five lines per request; one in 10,000 is the phrase.

    Request ids count up unless ``random_ids``: then they are random, as OpenStack's (uuid4) are,
    and the request-id index takes its keys in random order. A short ``span`` is a sustained rate:
    a million events in ten minutes is one hour of one day file, as a busy cloud writes it.
    """
    rnd = random.Random(seed)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=span)
    step_us = int(span * 1_000_000 / count)
    base = to_micros(start)
    rows: list[Row] = []
    probe_request = ""
    for i in range(count):
        if i % 5 == 0 or not random_ids:
            req = (f"req-{uuid.UUID(int=rnd.getrandbits(128), version=4)}" if random_ids
                   else f"req-{i // 5:08x}-5b3c-4f0e-9a55-0c2d6b3e8f11")
        if i == count // 2:
            probe_request = req
        comp = COMPONENTS[(i // 5) % len(COMPONENTS)]
        msg = f"{PHRASE}: libvirtError {i}" if i % 10_000 == 1234 else rnd.choice(TEMPLATES).format(
            n=rnd.randint(1, 9999), u=f"{rnd.getrandbits(64):016x}")
        values = {
            "id": f"ev-{i:09d}", "host": f"cn{i % 40:02d}", "component": comp, "type": "openstack",
            "level": rnd.choice(LEVELS), "logger": f"{comp}.manager", "pid": 30000 + i % 50, "request_id": req,
            "user_id": None, "project_id": None, "instance_id": None, "event_type": None, "publisher_id": None,
            "message": msg,
        }
        rows.append((base + i * step_us, *(values[c] for c in COLUMNS), "[]", "{}"))
    return rows, probe_request


def median_ms(fn: Callable[[], object], runs: int = 5) -> tuple[float, object]:
    fn()  # warm the page cache the same way for both engines
    times = []
    result: object = None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5_000, help="rows per insert transaction (a bus batch)")
    ap.add_argument("--url", default=None, help="store.events.url of the store to measure (default: SQLite files)")
    ap.add_argument("--random-ids", action="store_true",
                    help="random request ids (uuid4, as OpenStack's), not counting up: the index takes random keys")
    ap.add_argument("--span", type=float, default=3 * 86400,
                    help="seconds of log time the events cover (default three days; 600: a sustained rate, one hour "
                         "of one day file)")
    args = ap.parse_args()
    with events_store(args.url) as url:
        run(args, url)


def run(args: argparse.Namespace, url: str | None) -> None:

    rows, probe = make_rows(args.events, random_ids=args.random_ids, span=args.span)
    tmp = Path(tempfile.mkdtemp(prefix="events-bench-"))
    print(f"{args.events:,} events over {timedelta(seconds=args.span)}, batches of {args.batch:,}, in {tmp}")

    store = open_event_store(url or f"sqlite://{tmp / 'sqlite'}", tmp, ttl=30 * 86400.0, min_free_disk=0)
    ours_name = "postgresql (ours)" if url else "sqlite+fts5 (ours)"
    t, cpu, db0 = time.perf_counter(), time.process_time(), database_cpu(url)
    # CPU µs per row of each fifth of the load (this process's): does a row cost more as the days fill?
    fifths: list[float] = []
    fifth, mark_cpu, mark_rows = max(1, len(rows) // 5), cpu, 0
    for i in range(0, len(rows), args.batch):
        store.insert(rows[i: i + args.batch])
        done = min(i + args.batch, len(rows))
        if done >= (len(fifths) + 1) * fifth or done == len(rows):
            now_cpu = time.process_time()
            fifths.append((now_cpu - mark_cpu) / (done - mark_rows) * 1e6)
            mark_cpu, mark_rows = now_cpu, done
    store.maintain()  # the stage's retention pass (PostgreSQL: merges the text index's pending words)
    ours_insert = len(rows) / (time.perf_counter() - t)
    # PostgreSQL does the indexing in its own backends: their CPU counts as ours.
    db_cpu = sum(c - db0.get(pid, 0.0) for pid, c in database_cpu(url).items())
    ours_cpu = len(rows) / (time.process_time() - cpu + db_cpu)

    db = duckdb.connect(str(tmp / "peer.duckdb"))
    t, cpu = time.perf_counter(), time.process_time()
    csv_path = tmp / "rows.csv"
    with csv_path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    cols = ", ".join(f"'{c}': '{'BIGINT' if c == 'pid' else 'VARCHAR'}'" for c in COLUMNS)
    db.execute(f"CREATE TABLE events AS SELECT * FROM read_csv('{csv_path}', header=false, columns="
               f"{{'ts': 'BIGINT', {cols}, 'tags': 'VARCHAR', 'fields': 'VARCHAR'}})")
    peer_insert = len(rows) / (time.perf_counter() - t)
    peer_cpu = len(rows) / (time.process_time() - cpu)  # DuckDB's own threads count here too

    probes = {
        "request-id query": (
            lambda: store.search(f"request_id:{probe}", limit=100),
            lambda: db.execute("SELECT * FROM events WHERE request_id = ? ORDER BY ts DESC LIMIT 100",
                               [probe]).fetchall()),
        "phrase query": (
            lambda: store.search(f'"{PHRASE}"', limit=100),
            lambda: db.execute("SELECT * FROM events WHERE message ILIKE ? ORDER BY ts DESC LIMIT 100",
                               [f"%{PHRASE}%"]).fetchall()),
        "histogram 1m, component:nova": (
            lambda: store.histogram("component:nova", 60).buckets,
            lambda: db.execute("SELECT ts // 60000000 AS b, count(*) FROM events WHERE component = 'nova' "
                               "GROUP BY b ORDER BY b").fetchall()),
    }
    print(f"{'measure':32} {ours_name:>20} {'duckdb (peer)':>16} {'ratio peer/ours':>16}")
    print(f"{'insert rate (events/s)':32} {ours_insert:20,.0f} {peer_insert:16,.0f} {peer_insert / ours_insert:16.2f}")
    print(f"{'insert per CPU second (events)':32} {ours_cpu:20,.0f} {peer_cpu:16,.0f} {peer_cpu / ours_cpu:16.2f}")
    print(f"{'insert CPU µs per row, by fifth':32} {' '.join(f'{f:.1f}' for f in fifths):>20}"
          f"{'   (random request ids)' if args.random_ids else ''}")
    for name, (ours, peer) in probes.items():
        ours_ms, got = median_ms(ours)
        peer_ms, expect = median_ms(peer)
        n_ours = len(got) if isinstance(got, list) else 0
        n_peer = len(expect) if isinstance(expect, list) else 0
        if name.startswith("histogram"):
            n_ours = sum(1 for _, c in got if c)  # type: ignore[union-attr]
        assert n_ours == n_peer, f"{name}: ours found {n_ours}, peer {n_peer}"
        print(f"{name + ' (ms)':32} {ours_ms:20.2f} {peer_ms:16.2f} {peer_ms / ours_ms:16.2f}   ({n_ours} rows)")
    print(f"store on disk: {store.size_bytes() / 1e6:.0f} MB in {len(store.partitions())} day partitions; "
          f"duckdb: {(tmp / 'peer.duckdb').stat().st_size / 1e6:.0f} MB")
    store.close()


if __name__ == "__main__":
    main()
