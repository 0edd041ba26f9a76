"""Bus records: contract field names, JSON and msgpack round trips, unknown fields kept."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from telemetry.fastcodec import raw_log, raw_logs
from telemetry.models import AlarmTransition, Event, Notification, RawLog, Sample, decode, derived_id, encode

RECORDS = [
    RawLog(host="cn01", path="/var/log/nova/nova-compute.log", component="nova", type="openstack",
           offset=4096, inode=1234, lines=["a", "  b"]),
    Event(**{"@timestamp": "2026-03-02 09:14:07.112", "host": "cn01", "component": "nova", "level": "INFO",
             "message": "Claim successful", "request_id": "req-1", "tags": ["x"], "http": {"status": 200}}),
    Notification(message_id="m1", event_type="compute.instance.create.end", priority="info",
                 publisher_id="compute.cn01", timestamp="2026-03-02 09:14:21.330115", payload={"a": 1}),
    Sample(counter_name="cpu_util", counter_type="gauge", counter_unit="%", counter_volume=12.5,
           resource_id="r1", timestamp="2026-03-02T10:00:00Z", resource_metadata={"host": "cn01"}),
    AlarmTransition(alarm_id="a1", alarm_name="cpu high", previous="ok", current="alarm",
                    reason="Transition to alarm", reason_data={"type": "threshold"}),
]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_round_trip(record, fmt: str) -> None:
    data = encode(record, fmt)
    back = decode(type(record), data)
    assert back == record
    assert back.to_dict() == record.to_dict()


def test_contract_field_names() -> None:
    raw, event, notif, sample, trans = (r.to_dict() for r in RECORDS)
    assert {"host", "path", "component", "type", "offset", "inode", "lines", "read_at", "id"} <= raw.keys()
    assert {"@timestamp", "host", "component", "type", "level", "logger", "pid", "request_id", "user_id",
            "project_id", "instance_id", "message", "tags"} <= event.keys()
    assert "timestamp" not in event
    assert event["http"] == {"status": 200}  # grok captures ride along
    assert {"message_id", "event_type", "priority", "publisher_id", "timestamp", "payload"} <= notif.keys()
    assert notif["priority"] == "INFO"
    assert {"counter_name", "counter_type", "counter_unit", "counter_volume", "resource_id", "project_id",
            "user_id", "source", "timestamp", "resource_metadata", "message_id", "message_signature"} <= sample.keys()
    assert {"alarm_id", "alarm_name", "severity", "previous", "current", "reason", "reason_data",
            "timestamp"} <= trans.keys()


def test_unknown_fields_are_tolerated_and_kept() -> None:
    payload = orjson.dumps({**RECORDS[3].to_dict(), "monotonic_time": None, "future_field": {"x": 1}})
    s = decode(Sample, payload)
    assert s.to_dict()["future_field"] == {"x": 1}


def test_rawlog_id_is_stable_per_position() -> None:
    a = RawLog(host="h", path="/p", inode=7, offset=100, lines=["x"])
    b = RawLog(host="h", path="/p", inode=7, offset=100, lines=["x"], read_at="2030-01-01T00:00:00Z")
    c = RawLog(host="h", path="/p", inode=7, offset=101, lines=["x"])
    assert a.id == b.id != c.id


def test_sample_ids_and_validation() -> None:
    s1 = Sample(counter_name="m", counter_type="gauge", counter_volume=1, resource_id="r", timestamp=0)
    s2 = Sample(counter_name="m", counter_type="gauge", counter_volume=2, resource_id="r", timestamp=0)
    assert s1.message_id == s2.message_id  # same meter, resource and time: one sample
    assert str(s1.timestamp) == "1970-01-01 00:00:00+00:00"
    with pytest.raises(ValidationError) as ei:
        Sample(counter_name="m", counter_type="rate", counter_volume="x", resource_id="r")
    fields = {e["loc"][0] for e in ei.value.errors()}
    assert {"counter_type", "counter_volume"} <= fields


def test_shared_ceilometer_samples_parse(samples_dir: Path) -> None:
    data = json.loads((samples_dir / "ceilometer" / "cpu_util-signed-s3cret.json").read_text())
    samples = [Sample.model_validate(d) for d in data]
    assert len(samples) == 4 and all(s.counter_name == "cpu_util" for s in samples)
    assert samples[0].to_dict()["monotonic_time"] is None


def test_derived_id_is_uuid5() -> None:
    import uuid

    from telemetry.models import ID_NAMESPACE, derived_id

    for parts in [("rawlog", "node1", 42, 0, "ab12"), ("event", "h", "2026-01-01T00:00:00+00:00", "é"), ()]:
        assert derived_id(*parts) == str(uuid.uuid5(ID_NAMESPACE, "\x1f".join(str(p) for p in parts)))


@pytest.mark.parametrize("extra", [{}, {"env": "prod", "rack": "r1"}])
@pytest.mark.parametrize("given_id", ["", "0b7e4c1e-1111-5222-8333-444455556666"])
def test_raw_log_is_the_validated_record(extra: dict, given_id: str) -> None:
    from telemetry.timeutil import utcnow

    values = dict(host="cn01", path="/var/log/nova/nova-compute.log", component="nova", type="openstack",
                  offset=4096, inode=1234, lines=["a", "  b é"], read_at=utcnow(), tags=["truncated"])
    slow = RawLog(id=given_id, **values, **extra)
    fast = raw_log(id=given_id, **values, extra=dict(extra))
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_extra == slow.model_extra
    # The written-out to_dict and the generic one agree, for fast and validated records alike.
    generic = RawLog.model_dump(slow, mode="json", by_alias=True, exclude_none=False)
    assert fast.to_dict() == slow.to_dict() == generic
    assert list(fast.to_dict()) == list(generic)  # same key order, so the same JSON bytes
    assert fast.to_json() == slow.to_json() == orjson.dumps(generic)
    assert decode(RawLog, fast.to_json()) == slow


def test_raw_logs_is_fast_for_each_entry() -> None:
    """One read's entries built with their shared values given once: each record equal to ``fast``'s
    (ids derived where empty), each with extras and lists of its own."""
    from telemetry.timeutil import utcnow

    now, extra = utcnow(), {"env": "prod"}
    common = {"id": "", "host": "cn01", "path": "/var/log/nova/nova-api.log", "component": "nova",
              "type": "openstack", "offset": 0, "inode": 77, "lines": None, "read_at": now, "tags": None}
    entries = [("", 0, ["a"], []), ("given", 10, ["b", " c"], ["t"])]
    many = raw_logs(common, entries, extra)
    for rec, (id_, offset, lines, tags) in zip(many, entries, strict=True):
        one = raw_log(id=id_, host="cn01", path="/var/log/nova/nova-api.log", component="nova",
                          type="openstack", offset=offset, inode=77, lines=lines, read_at=now, tags=tags,
                          extra=dict(extra))
        assert rec == one and rec.to_json() == one.to_json() and rec.model_fields_set == one.model_fields_set
    assert many[0].id == derived_id("rawlog", "cn01", 77, 0) and many[1].id == "given"
    many[0].model_extra["env"] = "dev"  # type: ignore[index]
    assert many[1].model_extra == extra == {"env": "prod"}


def test_rawlog_to_dict_falls_back_for_other_values() -> None:
    from datetime import datetime, timedelta, timezone

    r = RawLog(host="h", path="/p", lines=["x"], read_at=datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
               weird=1.5, nested={"a": [1]})
    assert r.to_dict() == r.model_dump(mode="json", by_alias=True)
    r0 = RawLog(host="h", path="/p", lines=["x"], read_at="2026-01-01T00:00:00Z")
    assert r0.to_dict()["read_at"] == "2026-01-01T00:00:00Z" == r0.model_dump(mode="json")["read_at"]


EVENT_DATA = [
    {"message": "m", "type": "openstack", "path": "/x", "timestamp": "2026-03-02 09:00:00.000", "pid": "42",
     "loglevel": "INFO", "tags": ["a"], "http": {"status": [200, 1.5]}, "level": "INFO", "logger": "nova.x"},
    {"message": "é", "host": "cn01", "id": "given-id", "pid": 7, "tags": [], "request_id": "req-1"},
    {"message": "x", "tags": []},
    {"logger": "first", "f": None, "message": "no tags, an extra before the contract's keys"},
]


@pytest.mark.parametrize("data", EVENT_DATA)
def test_event_dict_is_the_validated_events(data: dict) -> None:
    from datetime import datetime, timezone

    from telemetry.fastcodec import event_dict

    data = {**data, "@timestamp": datetime(2026, 3, 2, 9, 0, 0, 1000, tzinfo=timezone.utc)}
    want = Event.model_validate(dict(data)).to_dict()
    got = event_dict(dict(data))
    assert got == want and list(got) == list(want)  # same keys in the same order: the same JSON bytes
    assert orjson.dumps(got) == Event.model_validate(dict(data)).to_json()
    without = event_dict(dict(data), with_id=False)
    assert without is not None and "id" not in without and {**without, "id": want["id"]} == want


@pytest.mark.parametrize("change", [{"pid": "abc"}, {"pid": True}, {"level": ["a", "b"]}, {"host": None},
                                    {"@timestamp": "2026-03-02T09:00:00"}, {"tags": ["a", 1]}, {"f": float("inf")},
                                    {"t": (1, 2)}, {"@timestamp": None}, {"tags": None}, {"id": 5},
                                    {"pid": "1" * 19}, {"request_id": 7}])
def test_event_dict_leaves_conversions_to_validation(change: dict) -> None:
    from datetime import datetime, timezone

    from telemetry.fastcodec import event_dict

    assert event_dict({"message": "m", "@timestamp": datetime.now(timezone.utc), **change}) is None
