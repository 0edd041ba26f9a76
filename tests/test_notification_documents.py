"""Search and alarms see a notification the same way: one document, one answer per query.

The event store and the rule engine once mapped notifications separately and
disagreed (``component:nova`` matched in search, not in alarms). Each
notification below goes into a real event store and through the rule stage's
ingestion, with a log alarm per query and an Aodh event alarm per trait
query: a query matches in search exactly when its alarm fires.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from events_support import event_factory
from store_support import BACKENDS, pg_database  # noqa: F401 (fixture)

from telemetry.bus import MemoryBus
from telemetry.config import Settings
from telemetry.events.documents import notification_document
from telemetry.events.rows import record_row, row_dict
from telemetry.models import Notification
from telemetry.rules.models import Alarm
from telemetry.rules.stage import RulesStage
from telemetry.runtime import Runtime

NOW = datetime.now(timezone.utc).replace(microsecond=123456)

NOTIFICATIONS = [
    Notification(message_id="n-create", event_type="compute.instance.create.end", priority="info",
                 publisher_id="compute.cn01", timestamp=NOW - timedelta(seconds=5),
                 payload={"tenant_id": "p-alpha", "user_id": "u-1", "instance_id": "i-111", "state": "active",
                          "flavor": {"name": "m1.small", "vcpus": 1}, "memory_mb": 2048},
                 _context_request_id="req-aaa"),
    Notification(message_id="n-error", event_type="compute.instance.update", priority="error",
                 publisher_id="compute.cn02", timestamp=NOW - timedelta(seconds=4),
                 payload={"tenant_id": "p-beta", "instance_id": "i-222", "state": "error",
                          "flavor": {"name": "m1.large", "vcpus": 4}, "memory_mb": 8192}),
    Notification(message_id="n-volume", event_type="volume.create.end", priority="info",
                 publisher_id="volume.st01", timestamp=NOW - timedelta(seconds=3),
                 payload={"tenant_id": "p-alpha", "volume_id": "v-333", "size": 10, "status": "available"},
                 _context_request_id="req-bbb"),
    Notification(message_id="n-port", event_type="port.create.end", priority="info",
                 publisher_id="network.net01", timestamp=NOW - timedelta(seconds=2),
                 payload={"port": {"id": "port-1", "tenant_id": "p-gamma", "device_owner": "compute:nova"}}),
    Notification(message_id="n-image", event_type="image.upload", priority="info",
                 publisher_id="image.localhost", timestamp=NOW - timedelta(seconds=1),
                 payload={"owner": "p-alpha", "name": "cirros", "size": 13267968, "host": "glance01"}),
]

QUERIES = [
    "component:nova", "component:cinder", "component:neutron", "component:glance",
    "project_id:p-alpha", "project_id:p-beta", "user_id:u-1", "instance_id:i-111",
    "request_id:req-aaa", "host:cn01", "host:glance01", "level:ERROR", "level:INFO",
    "event_type:compute.instance.create.end", "event_type:compute.instance.*",
    "type:notification AND component:nova", "state:error", "flavor.name:m1.small", "flavor.vcpus:4",
    "memory_mb:>4096", "size:[5 TO 20]", "NOT component:nova", "volume_id:v-333", "status:available",
    "port.device_owner:compute\\:nova", "publisher_id:volume.st01", "message:image.upload",
]
#: Aodh event-rule queries (trait fields, as Heat and the aodh CLI write them).
TRAIT_QUERIES = [("compute.instance.*", "traits.state", "error"), ("*", "project_id", "p-alpha"),
                 ("volume.*", "traits.size", "10"), ("*", "component", "nova"), ("*", "traits.flavor.name", "m1.small")]


@pytest.fixture(scope="module", params=BACKENDS)
def searched(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """What each query finds in the event store, on SQLite and on PostgreSQL."""
    factory = event_factory(request, tmp_path_factory.mktemp("events"))
    store = factory(ttl=86400.0)
    store.insert([record_row(n) for n in NOTIFICATIONS])
    try:
        return {q: {r["id"] for r in store.search(q, NOW - timedelta(hours=1), NOW + timedelta(hours=1), limit=100)}
                for q in QUERIES}
    finally:
        factory.close()


def fired(tmp_path: Path, n: Notification) -> set[str]:
    """Queries whose log alarm (or event alarm, keyed ``event:...``) fired on ``n`` in the rule stage."""
    rt = Runtime(settings=Settings(data_dir=tmp_path), mode="server", bus=MemoryBus(), data_dir=tmp_path)
    stage = RulesStage(rt)
    # a window wider than the run: the notifications are timed when the module loads, maybe minutes ago
    alarms = {q: Alarm(name=f"log {i}", type="log", log_rule={"query": q, "mode": "seen", "period": 86400})
              for i, q in enumerate(QUERIES)}
    for i, (etype, field, value) in enumerate(TRAIT_QUERIES):
        alarms[f"event:{field}={value}"] = Alarm(name=f"event {i}", type="event", event_rule={
            "event_type": etype, "query": [{"field": field, "op": "eq", "value": value}]})
    for a in alarms.values():
        stage.add_alarm(a)
    stage.ingest([n])
    return {q for q, a in alarms.items() if a.state == "alarm"}


def test_the_stored_row_reads_back_as_the_document() -> None:
    for n in NOTIFICATIONS:
        assert row_dict(record_row(n)) == notification_document(n)


@pytest.mark.parametrize("n", NOTIFICATIONS, ids=lambda n: n.message_id)
def test_a_query_matches_in_search_exactly_when_its_alarm_fires(n: Notification, searched, tmp_path: Path) -> None:
    got = fired(tmp_path, n)
    for q in QUERIES:
        assert (n.message_id in searched[q]) == (q in got), f"{q!r} on {n.message_id}: search and alarm disagree"
    assert any(n.message_id in ids for ids in searched.values())


def test_event_alarm_trait_queries_match_what_search_finds(searched, tmp_path: Path) -> None:
    fired_on = {n.message_id: fired(tmp_path / n.message_id, n) for n in NOTIFICATIONS}
    expect = {"event:traits.state=error": {"n-error"}, "event:project_id=p-alpha": {"n-create", "n-volume"},
              "event:traits.size=10": {"n-volume"}, "event:component=nova": {"n-create", "n-error"},
              "event:traits.flavor.name=m1.small": {"n-create"}}
    for key, ids in expect.items():
        assert {m for m, got in fired_on.items() if key in got} == ids, key
    # the same fields through search: glance's ``owner`` is not a project_id to either of them
    assert searched["project_id:p-alpha"] == expect["event:project_id=p-alpha"]
    assert searched["component:nova"] == expect["event:component=nova"]
