"""The events stage in-process over the memory bus: builder wiring, dedup of redelivery, ack after write."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from events_support import EventStoreFactory, make_event_store  # noqa: F401 (fixture)
from store_support import pg_database  # noqa: F401 (fixture)
from telemetry.bus import MemoryBus
from telemetry.bus.base import OutMessage
from telemetry.bus.records import publish_records
from telemetry.config import Settings
from telemetry.events.stage import EventStage
from telemetry.events.writer import ProcessEventStore
from telemetry.runtime import Runtime
from telemetry.stage import DEAD_LETTER_TOPIC, BusStage, reject_reason
from telemetry.wiring import server_components
from telemetry.models import Event, Notification, encode
from tests.support import wait_for


def runtime(tmp: Path, events_url: str = "sqlite://") -> Runtime:
    settings = Settings(data_dir=tmp, store={"events": {"url": events_url}})
    return Runtime(settings=settings, mode="server", bus=MemoryBus(), data_dir=tmp)




async def test_stage_stores_events_and_notifications_once(tmp_path: Path,
                                                          make_event_store: EventStoreFactory) -> None:
    """Through the wiring, on the store ``store.events.url`` names (embedded, or PostgreSQL)."""
    url = "sqlite://" if make_event_store.backend.startswith("sqlite") else make_event_store.url()
    rt = runtime(tmp_path, url)
    [stage] = [c for c in server_components(rt) if isinstance(c, EventStage)]
    store = rt.event_store
    assert store is not None and stage.name == "stage.events" and stage.group == "events"
    await stage.start()
    now = datetime.now(timezone.utc)
    records = [Event(**{"@timestamp": now - timedelta(seconds=i)}, host="cn01", component="nova", level="INFO",
                     request_id="req-1", message=f"line {i}") for i in range(50)]
    records.append(Notification(message_id="m-1", event_type="volume.create.end", priority="info",
                                publisher_id="volume.st01", timestamp=now, payload={"volume_id": "v1", "size": 1}))
    await publish_records(rt.bus, records)
    await publish_records(rt.bus, records)  # a redelivery after a crash looks just like this
    await wait_for(lambda: stage.processed == 102)
    assert stage.stored == 51
    assert len(store.search("", limit=1000)) == 51
    [n] = store.search("component:cinder AND size:1")
    assert n["level"] == "INFO" and n["host"] == "st01" and n["volume_id"] == "v1"
    assert store.partitions()
    if make_event_store.backend.startswith("sqlite"):
        assert (tmp_path / "events").is_dir()
    else:
        assert stage.details()["path"].startswith("postgresql://postgres@127.0.0.1:5432/")
    await stage.stop()


async def test_a_record_postgresql_cannot_key_is_dead_lettered_alone(tmp_path: Path, pg_database: str) -> None:
    """An id too long for the index that keeps writes idempotent: that record to the dead letters, the rest stored."""
    from store_support import drop_schemas, pg_schema_url

    from telemetry.events.store_pg import MAX_ID_CHARS

    url, schema = pg_schema_url(pg_database)
    rt = runtime(tmp_path, url)
    dead = await rt.bus.subscribe([DEAD_LETTER_TOPIC], "inspect")
    [stage] = [c for c in server_components(rt) if isinstance(c, EventStage)]
    await stage.start()
    now = datetime.now(timezone.utc)
    records = [Event(**{"@timestamp": now - timedelta(seconds=i)}, host="cn01", message=f"line {i}") for i in range(30)]
    records[17] = Event(**{"@timestamp": now}, id="x" * (MAX_ID_CHARS + 1), host="cn01", message="odd one")
    try:
        await publish_records(rt.bus, records)
        await wait_for(lambda: stage.stored == 29)
        [letter] = await dead.fetch(10, timeout=5)
        assert letter.headers["stage"] == "stage.events" and "id longer than" in letter.headers["error"]
        assert Event.from_json(letter.value).message == "odd one"
        assert rt.event_store is not None and len(rt.event_store.search("", limit=100)) == 29
    finally:
        await stage.stop()
        drop_schemas(pg_database, [schema])


class _WireBus(MemoryBus):
    """The memory bus as a broker looks to a consumer: records arrive as bytes."""

    in_process = False


async def test_behind_a_broker_the_writer_decodes_the_events_and_names_what_is_not_one(tmp_path: Path) -> None:
    """The events' bytes go to the store's writer process as they came (decoded there, off the daemon's
    core); bytes that are not an event are dead-lettered with the reason the bus stage gives, the rest stored."""
    rt = Runtime(settings=Settings(data_dir=tmp_path), mode="server", bus=_WireBus(), data_dir=tmp_path)
    dead = await rt.bus.subscribe([DEAD_LETTER_TOPIC], "inspect")
    [stage] = [c for c in server_components(rt) if isinstance(c, EventStage)]
    assert isinstance(rt.event_store, ProcessEventStore)
    seen: list[list[object]] = []
    own = stage._record_of
    stage._record_of = lambda cls, value: seen.append([own(cls, value)]) or seen[-1][0]  # type: ignore[method-assign]
    await stage.start()
    now = datetime.now(timezone.utc)
    events = [Event(**{"@timestamp": now - timedelta(seconds=i)}, host="cn01", component="nova",
                    request_id=f"req-{i}", message=f"line {i}", **{"flavor": "m1.small"}) for i in range(20)]
    values = [encode(e, "msgpack" if i % 2 else "json") for i, e in enumerate(events)]
    values[7] = b'{"id": "x", "@timestamp": "yesterday"}'
    values[9] = b"\xff not json"
    try:
        await rt.bus.publish("events", [OutMessage(v, b"cn01") for v in values])
        await wait_for(lambda: stage.processed == 20)
        assert stage.stored == 18
        assert all(isinstance(r, bytes) for [r] in seen)  # handed to the writer undecoded
        letters = await dead.fetch(10, timeout=5)
        expected = []  # the reasons the daemon's own decoding gives
        for bad in (values[7], values[9]):
            try:
                BusStage._record_of(stage, Event, bad)
            except Exception as exc:
                expected.append(reject_reason(exc))
        assert sorted(d.headers["reason"] for d in letters) == sorted(expected) == [
            "invalid:@timestamp", "undecodable:ExtraData"]
        assert {d.headers["stage"] for d in letters} == {"stage.events"}
        store = rt.event_store
        assert len(store.search("", start=now - timedelta(hours=1), limit=100)) == 18
        [e] = store.search('"line 3"', start=now - timedelta(hours=1))
        assert e["request_id"] == "req-3" and e["flavor"] == "m1.small"
    finally:
        await stage.stop()


async def test_in_this_process_packed_events_go_to_the_writer_as_packed_and_a_bad_one_is_named(tmp_path: Path) -> None:
    """A batch the parse workers packed reaches the writer process as those bytes (no dict is encoded again
    on the daemon's core); a record in it that cannot be stored is dead-lettered as itself, the rest stored,
    whether the batch came whole or beside records published one by one."""
    import marshal

    rt = runtime(tmp_path)
    dead = await rt.bus.subscribe([DEAD_LETTER_TOPIC], "inspect")
    [stage] = [c for c in server_components(rt) if isinstance(c, EventStage)]
    assert isinstance(rt.event_store, ProcessEventStore) and stage._packs_to_writer
    sent: list[tuple[int, int]] = []
    own = rt.event_store.insert_records

    def spy(records, packs=()):  # type: ignore[no-untyped-def]
        sent.append((len(records), len(packs)))
        return own(records, packs)

    rt.event_store.insert_records = spy  # type: ignore[method-assign]
    now = datetime.now(timezone.utc)
    events = [Event(**{"@timestamp": now - timedelta(seconds=i)}, host="cn01", component="nova",
                    message=f"packed {i}").to_dict() for i in range(12)]
    events[5] = {k: v for k, v in events[5].items() if k != "@timestamp"}  # no row can be built of it
    assert isinstance(rt.bus, MemoryBus)
    await publish_records(rt.bus, [Event(**{"@timestamp": now}, host="cn02", message="alone")])
    await rt.bus.publish("events", [OutMessage(b"", b"cn01", {}, e) for e in events], packed=marshal.dumps(events))
    await stage.start()
    try:
        await wait_for(lambda: stage.processed == 13)
        assert sent == [(1, 1)] and stage.stored == 12
        [letter] = await dead.fetch(10, timeout=5)
        assert letter.headers["reason"] == "unstorable:KeyError" and b'"packed 5"' in letter.value
        store = rt.event_store
        assert len(store.search("", start=now - timedelta(hours=1), limit=100)) == 12
        assert store.search('"packed 11"', start=now - timedelta(hours=1))[0]["component"] == "nova"
    finally:
        await stage.stop()
