"""The embedded event store: one SQLite file per UTC day, FTS5 over ``message``.

Why a file per day: expiry is then an unlink, so disk space comes back at
once (a DELETE would leave pages to be vacuumed), and a search over the last
hour opens one small file instead of walking an index over months. Writes go
through one lock (SQLite has a single writer anyway) and are idempotent on
``id``: a redelivered record hits the UNIQUE constraint and is ignored.
Readers open their own connections, so a long search never holds up writes
(WAL mode), and never create a file: a partition expired under their feet is
simply skipped.

The methods here block; the stage and the API call them from threads.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import threading
from collections import defaultdict
from contextlib import closing, contextmanager
from collections.abc import Callable, Iterable, Generator, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

from prometheus_client import Counter, Gauge

from telemetry.events.backend import DayRetention, Histogram, RecordInsert, bucket_step, count_expired, histogram_of
from telemetry.events.backend import DAY_US, day_number
from telemetry.events.backend import day_of as _day_of
from telemetry.events.paging import recent_page
from telemetry.events.rows import COLUMNS, SELECT_COLUMNS, Row, row_dict
from telemetry.events.sql import ID_TOKEN_CHARS, Compiled, compile_query
from telemetry.events.times import to_micros
from telemetry.metrics import REGISTRY

log = logging.getLogger(__name__)

EVENTS_STORED = Counter("telemetry_events_stored", "Events written to the event store (duplicates excluded)",
                        registry=REGISTRY)
EVENTS_DUPLICATE = Counter("telemetry_events_duplicates", "Redelivered events the store already held",
                           registry=REGISTRY)
PARTITIONS_DROPPED = Counter("telemetry_events_partitions_dropped", "Day partitions removed, by reason",
                             ["reason"], registry=REGISTRY)
PARTITIONS = Gauge("telemetry_events_partitions", "Day partitions the event store holds", registry=REGISTRY)
STORE_BYTES = Gauge("telemetry_events_store_bytes", "Bytes on disk of the event store", registry=REGISTRY)

#: Page cache of each day's writer: with SQLite's default 2 MB, the pages of the indexes that took
#: random keys (request ids, in B-trees before ID_INDEX) were re-read on nearly every insert.
WRITER_CACHE_KIB = 32 << 10
#: Page size of a new day file. Each commit writes every page it dirtied twice (the WAL, then the
#: checkpoint), about 3 KB of pages an event whatever the size, since FTS5 writes its segments
#: whole and the indexes' rows are small beside a page; at SQLite's 4 KB that was 1.6 writes and
#: 0.5 reads (system calls) an event, a fifth of the writer's CPU. At 16 KB a quarter as many,
#: for the same bytes and 3% more disk (``benchmarks/events.py``, docs/events.md). Files
#: written before keep their own size: SQLite fixes it when a database is created.
WRITER_PAGE_BYTES = 16 << 10
_FILE = re.compile(r"^events-(\d{4}-\d{2}-\d{2})\.db$")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    {", ".join(f"{c} INTEGER" if c == "pid" else f"{c} TEXT NOT NULL DEFAULT ''" if c == "message"
               else f"{c} TEXT {'NOT NULL UNIQUE' if c == 'id' else ''} COLLATE NOCASE" for c in COLUMNS)},
    tags TEXT NOT NULL DEFAULT '[]',
    fields TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_component ON events(component, ts);
CREATE INDEX IF NOT EXISTS events_level ON events(level, ts);
-- The request-id and instance keys are random (uuid4) and have no B-tree index: one taking them rewrote
-- more of its pages at every commit as the file grew (ID_INDEX below has them instead). Partial:
-- no log line has an event_type, and an equality on the column implies IS NOT NULL.
CREATE INDEX IF NOT EXISTS events_event_type ON events(event_type) WHERE event_type IS NOT NULL;
-- detail=full (the default) keeps token positions, which phrase queries need; columnsize=0
-- drops the per-row size table, used only by bm25 ranking, which no query uses.
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(message, content='events', content_rowid='seq', columnsize=0);
-- The index is fed by one INSERT ... SELECT per transaction (_INDEX_NEW), not by a trigger per row:
-- a statement that fires a trigger runs under a statement journal, and with the table's indexes
-- that journal cost more than the indexing itself (17k rows per CPU second with it, 40k without).
-- Files written by earlier versions lose theirs here, so no row is indexed twice.
DROP TRIGGER IF EXISTS events_fts_insert;
"""
_INSERT = f"INSERT OR IGNORE INTO events (ts, {', '.join(COLUMNS)}, tags, fields) VALUES ({', '.join('?' * (len(COLUMNS) + 3))})"
#: seq is the rowid (max + 1 for each new row) and the store is the only writer, under its lock:
#: the rows above the largest seq seen at the start of the transaction are exactly those it added.
_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM events"
_INDEX_NEW = "INSERT INTO events_fts(rowid, message) SELECT seq, message FROM events WHERE seq > ?"
#: Request and instance ids, for equality lookups. Their keys are random (uuid4), and a B-tree index
#: taking them has nearly every leaf page rewritten at every commit once it outgrows the page cache:
#: 600,000 pipeline-benchmark rows (ten minutes of their log time, so one hour of the day) cost the
#: writer 14.8 µs a row in the first quarter and 33.7 in the last with the hour-led B-tree indexes of
#: earlier versions, 10.5 and 11.7 without them. FTS5 writes a batch's terms as one new segment and
#: merges segments in the background of later commits, so its cost per row does not grow that way.
#: Both ids share one column (a lookup checks the column itself after the match, sql.py); no content
#: or positions are kept, only which rows hold a term. The ascii tokenizer with these token
#: characters keeps "req-<uuid>" one term, and ``sql.id_terms`` splits a queried value the same way.
ID_INDEX = (f"CREATE VIRTUAL TABLE events_ids USING fts5(ids, content='', columnsize=0, detail=none, "
            f"tokenize=\"ascii tokenchars '{ID_TOKEN_CHARS}'\")")
#: Segments of one size each full-text index lets accumulate before merging them (FTS5's default is 4).
#: Each commit writes a segment; merging later and more at once cut the writer's CPU per row by a
#: seventh (600,000 pipeline-benchmark rows in 43 commits: 14.8 µs a row on average, 12.7 at 16),
#: while a lookup reads a few more segments.
AUTOMERGE = 16
_IDS_OF = "coalesce(request_id, '') || ' ' || coalesce(instance_id, '')"
_IDS_NEW = (f"INSERT INTO events_ids(rowid, ids) SELECT seq, {_IDS_OF} FROM events "
            "WHERE seq > ? AND (request_id IS NOT NULL OR instance_id IS NOT NULL)")


class Written(NamedTuple):
    """What one ``write`` did: rows new to the store, rows given (less the expired), expired per source."""

    new: int
    total: int
    expired: dict[str, int]


class _Reader:
    """A cached read connection that the store can close under a query's feet, safely."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.conn.close()


class _Queries:
    """A query compiled for the day files with the id index, and (when one without is searched) for those."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.current = compile_query(text)  # raises QueryError at once, before any file is opened
        self.earlier: Compiled | None = None

    def of(self, id_index: bool) -> Compiled:
        if id_index:
            return self.current
        if self.earlier is None:
            self.earlier = compile_query(self.text, id_index=False)
        return self.earlier


def _fetch(conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a partition file created a moment ago, schema not yet in
            return []
        raise


def has_id_index(conn: sqlite3.Connection) -> bool:
    """Whether a day file has ``events_ids``: files an earlier version wrote and never opened again keep
    their B-tree indexes instead, which the queries of ``compile_query(..., id_index=False)`` use."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events_ids'").fetchone() is not None


def _add_id_index(conn: sqlite3.Connection) -> None:
    """Give a day file its id index, with every row it already holds (a file an earlier version began
    today), and drop the B-tree indexes it replaces: in one transaction, so a crash leaves either.
    The full-text indexes' merge setting (``AUTOMERGE``) is set in the same commit, files made before too."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not has_id_index(conn):
            conn.execute(ID_INDEX)
            held = conn.execute(_IDS_NEW, (0,)).rowcount
            conn.execute("DROP INDEX IF EXISTS events_request")
            conn.execute("DROP INDEX IF EXISTS events_instance")
            if held > 0:
                log.info("event store: indexed the request and instance ids of %d events already in %s",
                         held, conn.execute("PRAGMA database_list").fetchone()[2])
        for index in ("events_fts", "events_ids"):  # kept in the file: set again in the same commit
            conn.execute(f"INSERT INTO {index}({index}, rank) VALUES ('automerge', {AUTOMERGE})")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class EventStore(RecordInsert, DayRetention):
    """Day-partitioned SQLite files under ``root``; see the module docstring for why."""

    def __init__(self, root: Path, ttl: float, min_free_disk: float = 0.05,
                 disk_usage: Callable[[Path], Any] = shutil.disk_usage) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        #: Events dropped on arrival for being older than the ttl, per source ("nova on cn01").
        self.expired_on_arrival: dict[str, int] = {}
        self.min_free_disk = min_free_disk
        self._disk_usage = disk_usage
        self._lock = threading.Lock()
        self._writers: dict[date, sqlite3.Connection] = {}
        self._local = threading.local()
        self._readers: dict[Path, list[_Reader]] = defaultdict(list)
        self._update_gauges()

    def describe(self) -> str:
        return str(self.root)

    # -- partitions ------------------------------------------------------------------------------
    def path_of(self, day: date) -> Path:
        return self.root / f"events-{day.isoformat()}.db"

    def partitions(self) -> list[tuple[date, Path]]:
        """Existing day partitions, oldest first."""
        out = []
        for p in self.root.iterdir():
            m = _FILE.match(p.name)
            if m:
                out.append((date.fromisoformat(m.group(1)), p))
        return sorted(out)

    def _writer(self, day: date) -> sqlite3.Connection:
        conn = self._writers.get(day)
        if conn is None:
            conn = sqlite3.connect(self.path_of(day), check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA page_size={WRITER_PAGE_BYTES}")  # before the first write creates the file
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL, not NORMAL: the stage acks the bus once insert() returns, and the bus then forgets
            # the events, so a commit must survive a power cut, not only a kill -9 (which WAL with
            # NORMAL would). It costs one fsync per batch, small beside the FTS5 indexing.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA cache_size={-WRITER_CACHE_KIB}")
            conn.executescript(_SCHEMA)
            _add_id_index(conn)
            self._writers[day] = conn
        return conn

    @contextmanager
    def _reader(self, path: Path) -> Iterator[sqlite3.Connection | None]:
        """This thread's read connection to ``path`` (None when the partition is gone).

        Connections are kept per thread (the API's pool threads reuse them, so a
        query does not pay for opening and parsing the schema of each day) and
        registered with the store, so dropping a partition closes every one of
        them and the unlinked file's space really comes back at once. Each has
        its own lock: a drop waits for a query in progress on it to finish.
        """
        cache: dict[Path, _Reader] = self._local.__dict__.setdefault("readers", {})
        reader = cache.get(path)
        if reader is None or reader.closed:
            try:
                conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False)
                conn.execute("PRAGMA query_only=1")
            except sqlite3.OperationalError:
                yield None  # expired meanwhile
                return
            reader = cache[path] = _Reader(conn)
            with self._lock:
                self._readers[path].append(reader)
        with reader.lock:
            yield None if reader.closed else reader.conn

    def drop_partition(self, day: date, reason: str) -> int:
        """Unlink one day's files; returns the bytes freed."""
        self.close_writer(day)
        with self._lock:
            freed = 0
            base = self.path_of(day)
            for reader in self._readers.pop(base, []):
                reader.close()
            for p in (base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")):
                try:
                    freed += p.stat().st_size
                    p.unlink()
                except FileNotFoundError:
                    pass
        PARTITIONS_DROPPED.labels(reason=reason).inc()
        log.info("event store: dropped partition %s (%s, %d bytes)", day, reason, freed)
        return freed

    # -- writes ----------------------------------------------------------------------------------
    def _count_expired(self, by_source: dict[str, int]) -> None:
        count_expired(self.expired_on_arrival, by_source, self.ttl)

    def insert(self, rows: Iterable[Row], now: datetime | None = None) -> int:
        """Write rows durably; returns how many were new. Duplicates (same ``id``) are ignored."""
        return self._account(self.write_kept(list(rows), self.oldest_kept_us(now)))

    def _account(self, written: Written) -> int:
        if written.expired:
            self._count_expired(written.expired)
        EVENTS_STORED.inc(written.new)
        EVENTS_DUPLICATE.inc(written.total - written.new)
        return written.new

    def write_kept(self, rows: list[Row], floor: int) -> Written:
        """The writing half of ``insert``, without the counting (which the daemon's process keeps): rows
        older than ``floor`` (microseconds, the ttl's) are counted, not stored."""
        by_day: dict[date, list[Row]] = defaultdict(list)
        expired: dict[str, int] = {}
        for r in rows:
            ts = r[0]
            if ts < floor:
                source = f"{r[3] or r[4] or '?'} on {r[2] or '?'}"  # component (or type) on host
                expired[source] = expired.get(source, 0) + 1
                continue
            by_day[day_number(ts // DAY_US)].append(r)
        new = total = 0
        with self._lock:
            for day, batch in by_day.items():
                conn = self._writer(day)
                conn.execute("BEGIN")
                try:
                    last = conn.execute(_LAST_SEQ).fetchone()[0]
                    cur = conn.executemany(_INSERT, batch)
                    if cur.rowcount:  # all duplicates (a redelivery): nothing to index
                        conn.execute(_INDEX_NEW, (last,))
                        conn.execute(_IDS_NEW, (last,))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # a failed COMMIT (a full disk) rolled back already
                        conn.execute("ROLLBACK")
                    raise
                new += max(cur.rowcount, 0)  # rows actually inserted; ignored duplicates count 0
                total += len(batch)
        return Written(new, total, expired)

    def close_writer(self, day: date) -> None:
        """Close the writer of ``day`` (its partition is about to be unlinked)."""
        with self._lock:
            conn = self._writers.pop(day, None)
            if conn is not None:
                conn.close()

    # -- reads -----------------------------------------------------------------------------------
    def _days(self, start_us: int | None, end_us: int | None, newest_first: bool) -> list[tuple[date, Path]]:
        lo = _day_of(start_us) if start_us is not None else date.min
        hi = _day_of(end_us) if end_us is not None else date.max
        parts = [(d, p) for d, p in self.partitions() if lo <= d <= hi]
        return parts[::-1] if newest_first else parts

    def _each(self, start: datetime | None, end: datetime | None, newest_first: bool = True
              ) -> Generator[tuple[sqlite3.Connection, str, list[Any], bool], None, None]:
        """A connection per overlapping partition with the time condition, its parameters, and whether the
        file has the id index (``has_id_index``)."""
        start_us = to_micros(start) if start else None
        end_us = to_micros(end) if end else None
        cond, params = ["1"], []
        if start_us is not None:
            cond.append("e.ts >= ?")
            params.append(start_us)
        if end_us is not None:
            cond.append("e.ts <= ?")
            params.append(end_us)
        for _, path in self._days(start_us, end_us, newest_first):
            with self._reader(path) as conn:
                if conn is not None:
                    try:
                        ids = has_id_index(conn)
                    except sqlite3.OperationalError:  # a file created a moment ago, schema not yet in
                        continue
                    yield conn, " AND ".join(cond), params, ids

    def search(self, query: str | None = None, start: datetime | None = None, end: datetime | None = None,
               limit: int = 100, newest_first: bool = True) -> list[dict[str, Any]]:
        """Matching events in time order (newest first by default); raises QueryError for a bad query."""
        compiled = _Queries(query)
        order = "DESC" if newest_first else "ASC"
        out: list[dict[str, Any]] = []
        with closing(self._each(start, end, newest_first)) as parts:  # closing: release the reader at once
            for conn, cond, params, ids in parts:
                if len(out) >= limit:
                    break
                c = compiled.of(ids)
                want = limit - len(out)
                rows = recent_page(conn, cond, params, c, want, newest_first) if c.full_text else None
                if rows is None:
                    sql = (f"SELECT {SELECT_COLUMNS} FROM events e WHERE {cond} AND {c.where} "
                           f"ORDER BY e.ts {order}, e.seq {order} LIMIT ?")
                    rows = _fetch(conn, sql, [*params, *c.params, want])
                out.extend(row_dict(r) for r in rows)
        return out

    def histogram(self, query: str | None, interval: float, start: datetime | None = None,
                  end: datetime | None = None, max_buckets: int = 10_000) -> Histogram:
        """Counts per ``interval`` seconds; empty buckets between the first and last are filled with 0."""
        step = bucket_step(interval)
        compiled = _Queries(query)
        counts: dict[int, int] = defaultdict(int)
        for conn, cond, params, ids in self._each(start, end):
            c = compiled.of(ids)
            sql = f"SELECT (e.ts / ?) * ? AS b, count(*) FROM events e WHERE {cond} AND {c.where} GROUP BY b"
            for b, n in _fetch(conn, sql, [step, step, *params, *c.params]):
                counts[b] += n
        return histogram_of(counts, interval, step, start, end, max_buckets)

    # -- retention -------------------------------------------------------------------------------
    def free_fraction(self) -> float:
        usage = self._disk_usage(self.root)
        return usage.free / usage.total if usage.total else 1.0

    def shed_for_space(self) -> int:
        """Below ``min_free_disk``, drop the oldest partitions (never the newest) until above it."""
        dropped = 0
        while self.min_free_disk > 0 and self.free_fraction() < self.min_free_disk:
            parts = self.partitions()
            if len(parts) <= 1:
                log.warning("event store: free disk below %.1f%% and only the current partition is left",
                            self.min_free_disk * 100)
                break
            self.drop_partition(parts[0][0], "disk_space")
            dropped += 1
        return dropped

    def maintain(self, now: datetime | None = None) -> int:
        dropped = self.expire(now) + self.shed_for_space()
        self._update_gauges()
        return dropped

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.iterdir() if p.is_file())

    def _update_gauges(self) -> None:
        try:
            PARTITIONS.set(len(self.partitions()))
            STORE_BYTES.set(self.size_bytes())
        except FileNotFoundError:
            pass

    def close(self) -> None:
        with self._lock:
            for conn in self._writers.values():
                conn.close()
            self._writers.clear()
            readers = [r for rs in self._readers.values() for r in rs]
            self._readers.clear()
        for r in readers:
            r.close()
