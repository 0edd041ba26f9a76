"""The embedded event store's writer process: errors come back as what they are, and a dead writer is replaced.

The store's behaviour (queries, idempotence, expiry) runs on the writer process
too, as the ``sqlite-process`` backend of the event store suites; the fault
suite kills it mid-stream under a running daemon (tests/faults).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from telemetry.events.rows import record_row
from telemetry.events.writer import ProcessEventStore
from telemetry.workerproc import WorkerGone
from telemetry.models import Event
from telemetry.stage import environmental


def rows(n: int, start: int = 0) -> list[tuple]:
    now = datetime.now(timezone.utc)
    return [record_row(Event(**{"@timestamp": now}, id=f"e-{i}", host="cn01", component="nova", message=f"line {i}"))
            for i in range(start, start + n)]


@pytest.fixture
def store(tmp_path: Path):
    s = ProcessEventStore(tmp_path / "events", ttl=86400.0)
    yield s
    s.close()


def test_a_bad_row_fails_with_its_own_error_so_the_stage_can_split_the_batch(store: ProcessEventStore) -> None:
    with pytest.raises(sqlite3.ProgrammingError) as err:
        store.insert([rows(1)[0][:-2]])  # two values short: the statement cannot bind it
    assert not environmental(err.value)  # a data error: the stage splits the batch and dead-letters this row
    assert store.insert(rows(3)) == 3  # the writer is still there for the next batch


def test_a_killed_writer_is_replaced_and_redelivered_rows_are_not_stored_twice(store: ProcessEventStore) -> None:
    assert store.insert(rows(100)) == 100
    proc = store.child.proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.insert(rows(150)) == 50  # a new writer; the first 100 were committed already
    assert store.child.proc is not proc
    assert len(store.search("", limit=1000)) == 150


def test_a_writer_that_stops_answering_is_killed_and_the_batch_retried(store: ProcessEventStore) -> None:
    """A wedged writer (here: stopped) fails the call in time, as an environmental failure the stage retries."""
    proc = store.child.proc
    assert proc is not None
    default, store.child.timeout = store.child.timeout, 1.0
    os.kill(proc.pid, signal.SIGSTOP)
    with pytest.raises(WorkerGone) as err:
        store.insert(rows(10))
    assert isinstance(err.value, OSError) and environmental(err.value)
    assert proc.poll() is not None  # killed, not left stopped behind
    # The retry starts a new writer, which imports and opens the day file first: on a loaded CI machine
    # that took more than the one second given to notice the wedged one.
    store.child.timeout = default
    store.insert(rows(10))
    assert len(store.search("", limit=100)) == 10  # stored once, whatever the lost writer had done


def test_closing_the_store_ends_the_writer(tmp_path: Path) -> None:
    s = ProcessEventStore(tmp_path / "events", ttl=86400.0)
    s.insert(rows(5))
    proc = s.child.proc
    assert proc is not None
    s.close()
    assert proc.poll() == 0


def test_kill_9_while_the_writer_gives_a_file_of_an_earlier_version_its_id_index_loses_nothing(tmp_path: Path) -> None:
    """The writer that opens a day file an earlier version began (no id index, B-tree indexes on the ids)
    indexes its rows and drops those B-trees in one transaction: killed at any moment of it, the file
    is the old one or the new one, never half, and every id is found once a writer finished."""
    import shutil
    import threading
    import time

    from telemetry.events.store import EventStore

    now = datetime.now(timezone.utc)
    held = 60_000

    def events(start: int, n: int, request: str | None = None) -> list[tuple]:
        return [record_row(Event(**{"@timestamp": now}, id=f"e-{i}", host="cn01", component="nova",
                                 request_id=request or f"req-{i % 500:04d}", instance_id=f"inst-{i % 7}",
                                 message=f"line {i}"))
                for i in range(start, start + n)]

    plain = EventStore(tmp_path / "made", ttl=86400.0)
    plain.insert(events(0, held))
    (_, made), = plain.partitions()
    plain.close()
    conn = sqlite3.connect(made)
    conn.executescript("""DROP TABLE events_ids;
        CREATE INDEX events_request ON events(((ts / 3600000000) % 24), request_id) WHERE request_id IS NOT NULL;
        CREATE INDEX events_instance ON events(((ts / 3600000000) % 24), instance_id) WHERE instance_id IS NOT NULL;
        PRAGMA wal_checkpoint(TRUNCATE);""")
    conn.close()
    folder = tmp_path / "events"

    def fresh() -> tuple[ProcessEventStore, Path]:
        """The store over a copy of the file as the earlier version left it."""
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        shutil.copy(made, folder / made.name)
        store = ProcessEventStore(folder, ttl=86400.0)
        store.close_writer(now.date())  # answered once the child is up: the kill's clock starts at the writing
        return store, folder / made.name

    store, path = fresh()
    began = time.monotonic()
    store.insert(events(held, 1, "req-new"))  # the writer's open indexes the rows, then this one goes in
    whole = time.monotonic() - began
    store.close()

    # The kills close in on the moment the transaction commits (bisection between a kill that left the
    # old shape and one that left the new), so most land in the transaction or right beside it.
    shapes = {"old": 0, "new": 0}
    early, late = 0.0, 2 * whole
    for _ in range(10):
        store, path = fresh()
        proc = store.child.proc
        assert proc is not None
        delay = (early + late) / 2
        killer = threading.Timer(delay, lambda p=proc: p.poll() is None and os.kill(p.pid, signal.SIGKILL))
        killer.start()
        try:
            store.insert(events(held + 1, 1, "req-new"))
        except Exception as exc:  # killed mid-call: an environmental failure the stage retries
            assert environmental(exc), exc
        finally:
            killer.join()
            store.close()
        conn = sqlite3.connect(path)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            old, new = {"events_request", "events_instance"} <= names, "events_ids" in names
            assert old != new, names  # one shape or the other, whole
            shapes["new" if new else "old"] += 1
            early, late = (early, delay) if new else (delay, late)
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            conn.execute("INSERT INTO events_fts(events_fts) VALUES ('integrity-check')")
        finally:
            conn.close()
        store = ProcessEventStore(folder, ttl=86400.0)  # a writer that finishes, on what the kill left
        try:
            store.insert(events(held + 2, 1, "req-new"))
            assert len(store.search("request_id:req-0007", limit=1000)) == held // 500
            assert store.histogram("instance_id:inst-3", 86400).total >= held // 7
            assert len(store.search("request_id:req-new", limit=10)) in (1, 2)  # the killed call's row, if it was in
        finally:
            store.close()
    assert shapes["old"] >= 1 and shapes["new"] >= 1, shapes  # kills before the index was in (during it), and after
