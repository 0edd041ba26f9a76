"""The event store on real SQLite files and on PostgreSQL: queries, idempotence, notifications, expiry, the free-space guard."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from events_support import EventStoreFactory, make_event_store  # noqa: F401 (fixture)
from store_support import pg_database  # noqa: F401 (fixture)
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.events.backend import EventBackend
from telemetry.events.query import QueryError
from telemetry.events.rows import record_row
from telemetry.events.store import EventStore
from telemetry.models import Event, Notification

T0 = datetime(2026, 3, 2, 9, 14, 7, 112000, tzinfo=timezone.utc)
REQ = "req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11"
LONG_TTL = 3650 * 86400.0


def oslo_event(seconds: float, level: str, message: str, component: str = "nova", host: str = "cn01",
               request_id: str | None = REQ, instance_id: str | None = "3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21",
               **extra: object) -> Event:
    """An event as the parse stage makes one from an oslo.log line."""
    return Event(**{"@timestamp": T0 + timedelta(seconds=seconds)}, host=host, component=component,
                 type="openstack", level=level, logger=f"{component}.compute.manager", pid=31842,
                 request_id=request_id, instance_id=instance_id,
                 message=message, **extra)


def notification(samples_dir: Path, name: str) -> Notification:
    envelope = json.loads((samples_dir / "notifications" / f"{name}.json").read_text())
    return Notification.model_validate(json.loads(envelope["oslo.message"]))


@pytest.fixture
def store(make_event_store: EventStoreFactory, samples_dir: Path) -> EventBackend:
    s = make_event_store(ttl=LONG_TTL)
    events = [
        oslo_event(0, "INFO", "Claim successful on node cn01.example.org"),
        oslo_event(2.4, "INFO", "Creating image"),
        oslo_event(14.2, "INFO", "Took 14.21 seconds to build instance."),
        oslo_event(153, "ERROR", "Instance failed to spawn: libvirt.libvirtError: internal error",
                   request_id="req-c0ffee00-1111-4222-8333-944455556666"),
        oslo_event(60, "INFO", "GET /v2/images HTTP/1.1 status: 500", component="glance", host="cc01",
                   request_id="req-g1", status=500, verb="GET"),
        oslo_event(61, "INFO", "GET /v2/images HTTP/1.1 status: 200", component="glance", host="cc01",
                   request_id="req-g2", status=[200, 204]),
        Event(**{"@timestamp": T0 + timedelta(seconds=70)}, host="cn01", type="syslog",
              message="unparseable line", tags=["_grokparsefailure"]),
    ]
    s.insert([record_row(e) for e in events])
    s.insert([record_row(notification(samples_dir, n)) for n in
              ("compute.instance.create.end", "compute.instance.create.error", "volume.create.end")])
    return s


def messages(rows: list[dict]) -> list[str]:
    return [r["message"] for r in rows]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("component:glance", 2),
        ("type:openstack AND component:glance", 2),
        ("level:ERROR AND component:nova", 2),  # the log line and the create.error notification
        ("event_type:compute.instance.create.end", 1),
        ('"failed to spawn"', 1),
        ('message:"No valid host"', 1),  # the notification payload's message
        ("spaw*", 1),
        ("component:nov*", 6),
        ("status:[500 TO 599]", 1),
        ("status:204", 1),  # a name captured twice is a list; any element matches
        ("status:>=200 AND NOT status:500", 1),
        ("NOT level:INFO", 3),  # ERROR line, ERROR notification, and the untyped failure (no level)
        ("tags:_grokparsefailure", 1),
        ("verb:get", 1),  # values compare case-insensitively, as operators type them
        (f"request_id:{REQ}", 4),  # three log lines and the notification's _context_request_id
        ("memory_mb:[1024 TO 4096]", 1),
        ("metadata.metering.server_group:stack-abc123", 1),
        ("@timestamp:[2026-03-02T09:16:00Z TO *]", 3),
        ("(component:glance OR component:cinder) AND -status:500", 2),
        ("volume_id:*", 1),
        ("", 10),
    ],
)
def test_query_forms(store: EventBackend, query: str, expected: int) -> None:
    assert len(store.search(query, limit=1000)) == expected, messages(store.search(query, limit=1000))


def test_newest_first_limit_and_time_window(store: EventBackend) -> None:
    rows = store.search("component:nova", limit=3)
    stamps = [r["@timestamp"] for r in rows]
    assert stamps == sorted(stamps, reverse=True) and len(rows) == 3
    window = store.search("", start=T0 + timedelta(seconds=1), end=T0 + timedelta(seconds=15))
    assert messages(window) == ["compute.instance.create.end", "Took 14.21 seconds to build instance.", "Creating image"]
    oldest = store.search(f"request_id:{REQ}", newest_first=False)
    assert messages(oldest)[0] == "Claim successful on node cn01.example.org"


def test_notification_is_stored_as_an_event(store: EventBackend) -> None:
    [n] = store.search("event_type:compute.instance.create.error")
    assert n["type"] == "notification" and n["level"] == "ERROR" and n["publisher_id"] == "scheduler.cc01"
    assert n["component"] == "nova" and n["instance_id"] == "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
    assert n["project_id"] == "9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d" and n["code"] == 500
    assert n["id"] == "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b"


def test_writes_are_idempotent_on_id(store: EventBackend, samples_dir: Path) -> None:
    before = len(store.search("", limit=1000))
    again = [record_row(oslo_event(0, "INFO", "Claim successful on node cn01.example.org")),
             record_row(notification(samples_dir, "volume.create.end"))]
    assert store.insert(again) == 0
    assert len(store.search("", limit=1000)) == before


def _fts_rows(store: EventStore, phrase: str) -> int:
    """Entries of the full-text index itself (not the search joined on the table) for a phrase."""
    import sqlite3

    total = 0
    for _, path in store.partitions():
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO events_fts(events_fts) VALUES ('integrity-check')")  # raises if it disagrees
            total += conn.execute("SELECT count(*) FROM events_fts WHERE events_fts MATCH ?", [phrase]).fetchone()[0]
    return total


@pytest.mark.parametrize("make_event_store", ["sqlite"], indirect=True)  # reads SQLite's FTS5 index table itself
def test_index_gets_every_new_row_of_a_batch_with_duplicates_in_it(store: EventStore) -> None:
    """The index is fed once per transaction from the rows it added, so none may be missed."""
    assert _fts_rows(store, '"failed to spawn"') == 1
    fresh = oslo_event(200, "ERROR", "Instance failed to spawn again", request_id="req-x")
    assert store.insert([record_row(oslo_event(153, "ERROR", "Instance failed to spawn: libvirt.libvirtError: "
                                                "internal error", request_id="req-c0ffee00-1111-4222-8333-944455556666")),
                         record_row(fresh), record_row(fresh)]) == 1
    assert _fts_rows(store, '"failed to spawn"') == 2
    assert len(store.search('"failed to spawn"')) == 2
    assert store.insert([record_row(fresh)]) == 0
    assert _fts_rows(store, '"failed to spawn"') == 2


def test_a_new_day_file_has_the_writer_page_size_and_an_older_file_keeps_its_own(tmp_path: Path) -> None:
    """The page size is set before the first write creates the file (SQLite fixes it then, and WAL
    mode forbids changing it after); a file an earlier version created keeps its 4 KB and still takes rows."""
    import sqlite3

    from telemetry.events.store import WRITER_PAGE_BYTES

    store = EventStore(tmp_path / "ev", ttl=LONG_TTL)
    store.insert([record_row(oslo_event(0, "INFO", "Creating image"))])
    [(day, path)] = store.partitions()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == WRITER_PAGE_BYTES != 4096
    store.close()
    old_day = path.with_name(path.name.replace(day.isoformat(), (day - timedelta(days=1)).isoformat()))
    with sqlite3.connect(old_day) as conn:  # as an earlier version left it: SQLite's default page size
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE before_upgrade (x)")
    store = EventStore(tmp_path / "ev", ttl=LONG_TTL)
    assert store.insert([record_row(oslo_event(-86400, "INFO", "Creating image the day before"))]) == 1
    with sqlite3.connect(old_day) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1  # written into the old file
    assert len(store.search('"the day before"')) == 1
    store.close()


def test_a_file_from_the_trigger_era_keeps_its_index_whole_after_the_upgrade(tmp_path: Path) -> None:
    """Files written when a trigger fed the index lose the trigger; rows before and after are all found."""
    import sqlite3

    old = EventStore(tmp_path / "ev", ttl=LONG_TTL)
    old.insert([record_row(oslo_event(0, "INFO", "Creating image before"))])
    path = old.partitions()[0][1]
    old.close()
    with sqlite3.connect(path) as conn:  # as the schema before this change left every file
        conn.execute("CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN "
                     "INSERT INTO events_fts(rowid, message) VALUES (new.seq, new.message); END")
    upgraded = EventStore(tmp_path / "ev", ttl=LONG_TTL)
    assert upgraded.insert([record_row(oslo_event(1, "INFO", "Creating image after"))]) == 1
    assert _fts_rows(upgraded, '"creating image"') == 2
    assert messages(upgraded.search('"creating image"')) == ["Creating image after", "Creating image before"]
    upgraded.close()


def test_bad_query_raises_with_position(store: EventBackend) -> None:
    with pytest.raises(QueryError, match="not closed.*at position 13"):
        store.search("status:[1 TO")


def test_histogram_counts_per_bucket(store: EventBackend) -> None:
    h = store.histogram("component:nova", 60)
    assert [(b.strftime("%H:%M"), n) for b, n in h.buckets] == [("09:14", 4), ("09:15", 0), ("09:16", 2)]
    assert h.total == 6
    with pytest.raises(ValueError, match="exceed"):
        store.histogram("", 1, start=T0 - timedelta(days=1), end=T0)


def day_event(day: datetime, i: int) -> Event:
    return Event(**{"@timestamp": day + timedelta(seconds=i)}, host="h", component="nova", message=f"line {i} " + "x" * 200)


def test_expiry_drops_old_partitions_and_the_folder_shrinks_at_once(make_event_store: EventStoreFactory) -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
    s = make_event_store(ttl=3 * 86400)
    for days_ago in range(3):
        day = now - timedelta(days=days_ago)
        s.insert([record_row(day_event(day.replace(hour=1), i)) for i in range(2000)], now=now)
    # Two days beyond the ttl, written while they were still young.
    s.ttl = 30 * 86400
    for days_ago in (5, 6):
        s.insert([record_row(day_event((now - timedelta(days=days_ago)).replace(hour=1), i)) for i in range(2000)],
                 now=now)
    s.ttl = 3 * 86400
    assert len(s.partitions()) == 5
    size_before = s.size_bytes()
    assert len(s.search("", limit=100_000)) == 10_000  # leaves cached read connections on every day file
    assert s.maintain(now=now) == 2
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.islink(f"/proc/self/fd/{fd}")]
    assert not [h for h in held if "events-" in h and "(deleted)" in h], "a dropped file is still held open"
    assert [d.isoformat() for d, _ in s.partitions()] == ["2026-03-08", "2026-03-09", "2026-03-10"]
    assert s.size_bytes() < size_before * 0.7
    assert len(s.search("", limit=100_000)) == 6000
    # Older than the ttl on arrival: not stored, no file created for it.
    assert s.insert([record_row(day_event(now - timedelta(days=9), 1))], now=now) == 0
    assert len(s.partitions()) == 3


def test_free_space_guard_sheds_oldest_partitions_but_keeps_the_newest(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    s = EventStore(tmp_path / "events", ttl=LONG_TTL, min_free_disk=0.999999)  # this disk is never that empty
    for days_ago in (3, 2, 1, 0):
        s.insert([record_row(day_event(now - timedelta(days=days_ago), i)) for i in range(10)])
    newest = s.partitions()[-1][0]
    assert s.maintain() == 3
    assert [d for d, _ in s.partitions()] == [newest]
    assert len(s.search("", limit=100)) == 10


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)))
def test_the_short_way_to_micros_agrees_with_the_long_one(when: datetime) -> None:
    """Rows take their time from the event's ISO text without an aware datetime; nothing may move."""
    from telemetry.events.times import iso_micros, to_micros
    from telemetry.models import iso_utc
    from telemetry.timeutil import parse_timestamp

    for text in (iso_utc(when), when.isoformat(), when.strftime("%Y-%m-%d %H:%M:%S.%fZ"),
                 when.isoformat(timespec="milliseconds").replace("+00:00", "Z")):
        assert iso_micros(text) == to_micros(parse_timestamp(text)), text
    assert iso_micros(when) == to_micros(when)


@pytest.mark.parametrize("extra", [{}, {"pid": "31843"}, {"pid": None}, {"tags": ["_grokparsefailure"]},
                                   {"status": [200, 204], "verb": "GET"}, {"message": ""}])
def test_a_row_from_the_contract_dict_equals_the_row_from_the_event(extra: dict) -> None:
    """The parse stage hands the events stage dicts in-process, a broker hands it Events: one row either way."""
    data = {"@timestamp": T0, "host": "cn01", "component": "nova", "type": "openstack", "level": "INFO",
            "pid": 31842, "request_id": REQ, "message": "Creating image", **extra}
    ev = Event.model_validate(data)
    assert record_row(ev.to_dict()) == record_row(ev)


def test_request_and_instance_lookups_use_the_id_index(tmp_path: Path) -> None:
    """Request and instance ids are found through the id index (terms, then the column checked), case
    aside, and it finds the rows also beside another condition; lines outside any request ([-]) add nothing to it, and a
    value that only shares a term with an id, or names the other id column, finds nothing."""
    import sqlite3

    from telemetry.events.sql import compile_query

    inst = "3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21"
    store = EventStore(tmp_path, ttl=86400 * 365)
    store.insert([record_row(oslo_event(i, "INFO", f"line {i}", request_id=None if i % 2 else REQ,
                                        instance_id=inst if i % 3 == 0 else None)) for i in range(20)])
    try:
        assert len(store.search(f"request_id:{REQ}", limit=100)) == 10
        assert len(store.search(f"request_id:{REQ.upper()}", limit=100)) == 10
        assert len(store.search(f"instance_id:{inst}", limit=100)) == 7
        assert len(store.search(f"request_id:{REQ} AND instance_id:{inst}", limit=100)) == 4
        assert len(store.search(f"request_id:{REQ} AND component:nova", limit=100)) == 10
        assert len(store.search(f"request_id:{REQ} AND component:NOVA AND pid:31842", limit=100)) == 10
        assert store.search(f"request_id:{REQ} AND component:neutron", limit=100) == []
        assert len(store.search(f"NOT request_id:{REQ}", limit=100)) == 10
        assert store.search(f"request_id:{inst}", limit=100) == []  # in the index, but not this column's
        assert store.search(f'request_id:"{REQ} x"', limit=100) == []  # every term, then the column
        assert store.search("request_id:req", limit=100) == []
        assert store.search('request_id:"-"', limit=100) == []
        assert store.search('request_id:"/"', limit=100) == []  # no term at all: the column is read
        (_, path), = store.partitions()
        conn = sqlite3.connect(path)
        try:
            def held(value: str) -> int:
                return conn.execute("SELECT count(*) FROM events_ids WHERE events_ids MATCH ?", [f'"{value}"']).fetchone()[0]

            assert (held(REQ), held(inst), held("req")) == (10, 7, 0)  # one term each id
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
            assert not names & {"events_request", "events_instance"}
            # The id drives also beside an equality on an indexed column (it would walk the component's rows).
            for query in (f"request_id:{REQ}", f"instance_id:{inst}", f"component:nova AND request_id:{REQ}",
                          f"request_id:{REQ} AND level:INFO AND (host:cn01 OR host:cn02)"):
                compiled = compile_query(query)
                plan = " ".join(str(r) for r in conn.execute(
                    f"EXPLAIN QUERY PLAN SELECT e.seq FROM events e WHERE e.ts >= ? AND e.ts <= ? AND "
                    f"{compiled.where} ORDER BY e.ts DESC", [0, 2**62, *compiled.params]))
                assert "VIRTUAL TABLE INDEX" in plan and "events_component" not in plan, (query, plan)
                assert "events_level" not in plan, (query, plan)
        finally:
            conn.close()
    finally:
        store.close()


def _as_an_earlier_version_made_it(path: Path, index: str) -> None:
    """A day file without the id index, with the B-tree ``index`` on request ids and the hour-led one
    on instances that earlier versions made."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.executescript(f"""DROP TABLE events_ids;
        CREATE INDEX events_request ON events({index}) WHERE request_id IS NOT NULL;
        CREATE INDEX events_instance ON events(((ts / 3600000000) % 24), instance_id) WHERE instance_id IS NOT NULL;""")
    conn.close()


@pytest.mark.parametrize("index", ["((ts / 3600000000) % 24), request_id", "request_id, ts"])
def test_a_day_file_of_an_earlier_version_is_searched_through_its_own_indexes(tmp_path: Path, index: str) -> None:
    """Until the writer opens it again, a file without the id index answers id lookups from its B-tree
    indexes (each hour of the hour-led one, or the older request id then time): through them, not a scan."""
    import sqlite3

    from telemetry.events.sql import compile_query

    store = EventStore(tmp_path, ttl=86400 * 365)
    store.insert([record_row(oslo_event(i, "INFO", f"line {i}", request_id=REQ if i % 2 else None)) for i in range(20)])
    (_, path), = store.partitions()
    store.close()
    _as_an_earlier_version_made_it(path, index)
    store = EventStore(tmp_path, ttl=86400 * 365)
    try:
        assert len(store.search(f"request_id:{REQ}", limit=100)) == 10
        assert store.histogram(f"request_id:{REQ}", 86400).total == 10
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        compiled = compile_query(f"request_id:{REQ}", id_index=False)
        plan = " ".join(str(r) for r in conn.execute(
            f"EXPLAIN QUERY PLAN SELECT e.seq FROM events e WHERE {compiled.where}", compiled.params))
        assert "events_request" in plan, plan
    finally:
        conn.close()


def test_the_writer_gives_a_day_file_of_an_earlier_version_the_id_index_with_every_row(tmp_path: Path) -> None:
    """Written to again (a file an earlier version began today), a day file gets the id index with the
    rows it already held, and loses the B-tree indexes it replaces: old and new rows are found."""
    import sqlite3

    store = EventStore(tmp_path, ttl=86400 * 365)
    store.insert([record_row(oslo_event(i, "INFO", f"line {i}")) for i in range(5)])
    (_, path), = store.partitions()
    store.close()
    _as_an_earlier_version_made_it(path, "((ts / 3600000000) % 24), request_id")
    store = EventStore(tmp_path, ttl=86400 * 365)
    try:
        store.insert([record_row(oslo_event(i, "INFO", f"line {i}")) for i in range(5, 8)])
        assert len(store.search(f"request_id:{REQ}", limit=100)) == 8
        assert len(store.search("instance_id:3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21", limit=100)) == 8
        conn = sqlite3.connect(path)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            assert "events_ids" in names and not names & {"events_request", "events_instance"}
            assert conn.execute("SELECT count(*) FROM events_ids WHERE events_ids MATCH ?", [f'"{REQ}"']).fetchone()[0] == 8
        finally:
            conn.close()
    finally:
        store.close()


def test_request_and_instance_lookups_in_every_hour_before_1970_and_in_older_files(tmp_path: Path) -> None:
    """Ids are found at every hour of the day, also before 1970, through the id index and through the
    hour-led indexes of a file an earlier version made (each hour sought, also the negative hours of
    a time before 1970: integer division truncates toward zero)."""
    store = EventStore(tmp_path, ttl=86400 * 365 * 100)
    times = [datetime(1969, 12, 31, 20, 30, tzinfo=timezone.utc), *(T0.replace(hour=h) for h in range(24))]
    events = [Event(**{"@timestamp": t}, host="cn01", component="nova", type="openstack", request_id=REQ,
                    instance_id="3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21", message=f"at {t}") for t in times]
    store.insert([record_row(e) for e in events], now=T0)
    start, end = datetime(1969, 1, 1, tzinfo=timezone.utc), T0 + timedelta(days=2)
    for query in (f"request_id:{REQ}", f"request_id:{REQ.upper()}", "instance_id:3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21"):
        assert len(store.search(query, start, end, limit=100)) == 25, query
    assert len(store.search(f"NOT request_id:{REQ}", start, end, limit=100)) == 0
    store.close()
    for _, path in EventStore(tmp_path, ttl=0).partitions():
        _as_an_earlier_version_made_it(path, "((ts / 3600000000) % 24), request_id")
    store = EventStore(tmp_path, ttl=86400 * 365 * 100)
    try:
        for query in (f"request_id:{REQ}", "instance_id:3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21"):
            assert len(store.search(query, start, end, limit=100)) == 25, query
    finally:
        store.close()


@settings(deadline=None)  # each example creates a day file and commits it (fsync): the disk sets the time
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40))
def test_any_request_id_is_found_by_itself_through_the_id_index(value: str) -> None:
    """``sql.id_terms`` splits a value as FTS5's ascii tokenizer does (else a stored id would not be
    found, or a quoted term of two tokens would be a phrase, which an index without positions refuses):
    any id, punctuation and non-ASCII letters included, is found by its own equality, and only it."""
    import sqlite3
    import tempfile

    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(Path(tmp), ttl=86400 * 365 * 100)
        try:
            store.insert([record_row(oslo_event(0, "INFO", "one", request_id=value, instance_id=None)),
                          record_row(oslo_event(1, "INFO", "two", request_id=value + "x", instance_id=None))], now=T0)
            found = store.search(f"request_id:{quoted}", T0 - timedelta(days=1), T0 + timedelta(days=1), limit=10)
            assert [e["message"] for e in found] == ["one"]
        except sqlite3.OperationalError as exc:  # pragma: no cover - the failure this test exists for
            raise AssertionError(f"{value!r}: {exc}") from exc
        finally:
            store.close()


def test_both_full_text_indexes_merge_sixteen_segments_at_a_time(tmp_path: Path) -> None:
    """The merge setting is kept in each day file, one an earlier version made included."""
    import sqlite3

    from telemetry.events.store import AUTOMERGE

    store = EventStore(tmp_path, ttl=86400 * 365)
    store.insert([record_row(oslo_event(0, "INFO", "one"))])
    (_, path), = store.partitions()
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO events_fts(events_fts, rank) VALUES ('automerge', 4)")
    conn.commit()
    conn.close()
    store = EventStore(tmp_path, ttl=86400 * 365)
    store.insert([record_row(oslo_event(1, "INFO", "two"))])
    store.close()
    conn = sqlite3.connect(path)
    try:
        for index in ("events_fts", "events_ids"):
            assert conn.execute(f"SELECT v FROM {index}_config WHERE k = 'automerge'").fetchone() == (AUTOMERGE,)
    finally:
        conn.close()
