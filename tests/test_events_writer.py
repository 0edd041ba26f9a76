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
    store.child.timeout = 1.0
    os.kill(proc.pid, signal.SIGSTOP)
    with pytest.raises(WorkerGone) as err:
        store.insert(rows(10))
    assert isinstance(err.value, OSError) and environmental(err.value)
    assert proc.poll() is not None  # killed, not left stopped behind
    store.insert(rows(10))
    assert len(store.search("", limit=100)) == 10  # stored once, whatever the lost writer had done


def test_closing_the_store_ends_the_writer(tmp_path: Path) -> None:
    s = ProcessEventStore(tmp_path / "events", ttl=86400.0)
    s.insert(rows(5))
    proc = s.child.proc
    assert proc is not None
    s.close()
    assert proc.poll() == 0
