"""The events stage in-process over the memory bus: builder wiring, dedup of redelivery, ack after write."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from events_support import EventStoreFactory, make_event_store  # noqa: F401 (fixture)
from store_support import pg_database  # noqa: F401 (fixture)
from telemetry.bus import MemoryBus
from telemetry.bus.records import publish_records
from telemetry.config import Settings
from telemetry.events.stage import EventStage
from telemetry.runtime import Runtime
from telemetry.wiring import server_components
from telemetry.models import Event, Notification
from tests.support import wait_for


def runtime(tmp: Path, events_url: str = "sqlite://") -> Runtime:
    settings = Settings(data_dir=tmp, store={"events": {"url": events_url}})
    return Runtime(settings=settings, mode="server", bus=MemoryBus(), data_dir=tmp)




async def test_stage_stores_events_and_notifications_once(tmp_path: Path,
                                                          make_event_store: EventStoreFactory) -> None:
    """Through the wiring, on the store ``store.events.url`` names (embedded, or PostgreSQL)."""
    url = "sqlite://" if make_event_store.backend == "sqlite" else make_event_store.url()
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
    if make_event_store.backend == "sqlite":
        assert (tmp_path / "events").is_dir()
    else:
        assert stage.details()["path"].startswith("postgresql://postgres@127.0.0.1:5432/")
    await stage.stop()
