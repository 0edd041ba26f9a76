"""What only the PostgreSQL event store has to answer for: several servers on one store, text PostgreSQL
refuses (NUL), values too long for an index entry, a database that went away, and any query as SQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_support import drop_schemas, pg_database, pg_schema_url  # noqa: F401 (fixture)

from telemetry.events.backend import StoreUnavailable
from telemetry.events.query import QueryError
from telemetry.events.rows import record_row
from telemetry.events.store_pg import MAX_ID_CHARS, PgEventStore
from telemetry.models import Event

NOW = datetime.now(timezone.utc)
DAY = 86400.0


@pytest.fixture
def url(pg_database: str) -> Iterator[str]:
    url, schema = pg_schema_url(pg_database)
    yield url
    drop_schemas(pg_database, [schema])


def event(i: int, message: str = "", **extra: object) -> Event:
    fields: dict[str, object] = {"host": "cn01", "component": "nova", "level": "INFO", **extra}
    return Event(**{"@timestamp": NOW - timedelta(seconds=i)}, message=message or f"line {i} of the stream",
                 **fields)


def test_two_servers_share_one_store_and_a_redelivery_is_stored_once(url: str) -> None:
    a, b = PgEventStore(url, ttl=DAY), PgEventStore(url, ttl=DAY)
    rows = [record_row(event(i)) for i in range(2000)]
    new: list[int] = []

    def write(store: PgEventStore) -> None:  # both servers got the same batch (a redelivery after a rebalance)
        new.append(sum(store.insert(rows[i:i + 100]) for i in range(0, len(rows), 100)))

    threads = [threading.Thread(target=write, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(new) == 2000
    assert len(b.search("", limit=10_000)) == len(a.search("", limit=10_000)) == 2000
    assert a.histogram("component:nova", 3600, NOW - timedelta(hours=1), NOW).total == 2000
    assert a.partitions() == b.partitions() and a.partitions()
    a.close()
    b.close()


def test_nul_characters_are_kept_as_replacement_characters(url: str) -> None:
    s = PgEventStore(url, ttl=DAY)
    assert s.insert([record_row(event(1, "before\x00after", weird="a\x00b", tags=["t\x00"]))]) == 1
    [got] = s.search("before")
    assert got["message"] == "before\ufffdafter" and got["weird"] == "a\ufffdb" and got["tags"] == ["t\ufffd"]
    assert s.search("weird:a*b") == [got]
    s.close()


def test_values_longer_than_an_index_entry_are_stored_and_found(url: str) -> None:
    s = PgEventStore(url, ttl=DAY)
    long_component = "nova-" + "x" * 20_000
    long_request = "req-" + "é" * 5000
    s.insert([record_row(event(1, component=long_component, request_id=long_request)),
              record_row(event(2, component=long_component[:-1]))])
    assert [e["component"] for e in s.search(f'component:"{long_component}"')] == [long_component]
    assert len(s.search(f'request_id:"{long_request.upper()}"')) == 1  # still case-insensitive
    long_message = " ".join(f"w{i}" for i in range(30_000))  # past the part the text index holds
    s.insert([record_row(event(3, long_message))])
    assert len(s.search("w10")) == 1 and len(s.search("*w29999*")) == 1
    s.close()


def test_an_id_no_index_can_hold_is_refused_alone(url: str) -> None:
    s = PgEventStore(url, ttl=DAY)
    bad = record_row(Event(**{"@timestamp": NOW}, id="x" * (MAX_ID_CHARS + 1), message="m"))
    with pytest.raises(ValueError, match="id longer than"):  # the stage's halving dead-letters that record alone
        s.insert([record_row(event(1)), bad])
    assert s.insert([record_row(event(1))]) == 1
    s.close()


def test_the_store_survives_its_connections_being_cut(url: str, pg_database: str) -> None:
    s = PgEventStore(url, ttl=DAY)
    s.insert([record_row(event(1))])
    assert len(s.search("")) == 1
    pids = [s._conn.info.backend_pid, *(c.info.backend_pid for c in s._readers.idle)]
    with psycopg.connect(pg_database, autocommit=True) as admin:  # a database restart, as this store sees it
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))
    assert len(s.search("")) == 1  # the pooled connection was cut: read again on a new one
    with pytest.raises(psycopg.OperationalError):  # environmental: the stage gives the batch back and retries
        s.insert([record_row(event(2))])
    assert s.insert([record_row(event(2))]) == 1
    assert len(s.search("")) == 2
    s.close()


def test_a_database_that_cannot_answer_is_store_unavailable(url: str) -> None:
    s = PgEventStore(url, ttl=DAY)
    s.url = "postgresql://postgres@127.0.0.1:1/nowhere"  # the next connections go nowhere
    s._readers.url = s.url
    s._readers.close()
    with pytest.raises(StoreUnavailable, match="could not answer"):
        s.search("")
    s.close()


_TOKENS = st.sampled_from(["a", "b", "level:", "ERROR", "AND", "OR", "NOT", "-", "(", ")", '"', '"x y"', "[", "]",
                           "{", "}", " TO ", "*", "?", ":", "\\", ">=", "<", "@timestamp:", "now-1h", " ", "é",
                           "status:", "pid:", "tags:", "weird.field:", "1e999", "99999999999999999999", "%", "_",
                           "'", "$", "message:", "host:", "0x1f", "-1.5e3"])


@pytest.fixture(scope="module")
def shared_store(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgEventStore]:
    url, schema = pg_schema_url(pg_database)
    s = PgEventStore(url, ttl=DAY)
    s.insert([record_row(event(i, status=[200, i], pid=i, tags=["x"])) for i in range(5)])
    yield s
    s.close()
    drop_schemas(pg_database, [schema])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_TOKENS, max_size=10).map("".join))
def test_any_query_runs_or_names_its_position(shared_store: PgEventStore, text: str) -> None:
    """No query reaches PostgreSQL as SQL it refuses: it answers, or the parser names the position."""
    try:
        shared_store.search(text, limit=5)
        shared_store.histogram(text, 3600, NOW - timedelta(hours=2), NOW)
    except QueryError as exc:
        assert 1 <= exc.position <= len(text) + 1


def test_wiring_refuses_an_unreachable_database_with_the_setting_to_change(tmp_path: Path) -> None:
    from telemetry.bus import MemoryBus
    from telemetry.component import StartupError
    from telemetry.config import Settings
    from telemetry.runtime import Runtime
    from telemetry.wiring import event_store

    settings_ = Settings(data_dir=tmp_path, store={"events": {"url": "postgresql://postgres@127.0.0.1:1/x"}})
    rt = Runtime(settings=settings_, mode="server", bus=MemoryBus(), data_dir=tmp_path)
    with pytest.raises(StartupError, match="store.events.url: cannot open the event store in PostgreSQL"):
        event_store(rt)
