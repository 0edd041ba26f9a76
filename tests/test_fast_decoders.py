"""Each hand-written fast decoder gives what its model gives, or declines: never a third answer.

``fast_sample_doc`` skips pydantic on the rule stage's hot path. Fed arbitrary
sample-shaped maps (valid, subtly wrong, or garbage) as JSON and msgpack, it
must either return exactly ``sample_doc`` of the validated model, or return
None where the model refuses or where it cannot be sure. Timestamps are
fixed so "now" defaults cannot differ between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import msgpack
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from telemetry.fastcodec import fast_event, fast_rawlog, fast_sample_doc
from telemetry.models import Event, RawLog, Record, Sample, decode, sample_doc

R = TypeVar("R", bound=Record)
TEXT = st.text(max_size=12)
ODD = st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=False), st.booleans(), TEXT,
                st.lists(st.integers(), max_size=2), st.dictionaries(TEXT, st.integers(), max_size=2))


def _field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a good value, sometimes an odd one."""
    return st.one_of(good, good, good, ODD)


SAMPLES = st.fixed_dictionaries(
    {
        "counter_name": _field(TEXT),
        "counter_type": _field(st.sampled_from(["gauge", "delta", "cumulative", "Gauge", ""])),
        "counter_volume": _field(st.one_of(st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=False))),
        "resource_id": _field(TEXT),
        "timestamp": _field(st.sampled_from(["2026-03-02T10:00:00Z", "2026-03-02 10:00:00.5+02:00",
                                             "not a time", 1772445600, 1772445600.25])),
    },
    optional={
        "counter_unit": _field(TEXT), "project_id": _field(TEXT), "user_id": _field(TEXT),
        "source": _field(TEXT), "resource_metadata": _field(st.dictionaries(TEXT, st.integers(), max_size=3)),
        "message_id": _field(TEXT), "message_signature": _field(TEXT), "extra_field": ODD,
    },
)


def _wire(data: dict[str, Any], fmt: str) -> bytes | None:
    """``data`` as a bus carries it in ``fmt``, or None where that wire cannot carry it."""
    try:
        return orjson.dumps(data) if fmt == "json" else msgpack.packb(data, use_bin_type=True)
    except (TypeError, OverflowError, orjson.JSONEncodeError):
        return None


def _model(raw: bytes, cls: type[R], view: Callable[[R], dict[str, Any]]) -> dict[str, Any] | None:
    """What the consumers read of the validated record, or None where the model refuses it."""
    try:
        return view(decode(cls, raw))
    except (ValidationError, ValueError, TypeError, OverflowError, OSError):
        return None


def _model_doc(raw: bytes) -> dict[str, Any] | None:
    return _model(raw, Sample, sample_doc)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SAMPLES, st.sampled_from(["json", "msgpack"]))
def test_fast_sample_doc_equals_the_model_or_declines(data: dict[str, Any], fmt: str) -> None:
    raw = _wire(data, fmt)
    if raw is None:
        return  # not encodable on this wire (integers past 64 bits in msgpack)
    fast = fast_sample_doc(raw)
    if fast is None:
        return
    assert fast == _model_doc(raw), data


def test_it_declines_what_the_model_refuses() -> None:
    """The drift the issue found: ``resource_metadata: null`` was accepted here and refused by the model."""
    base = {"counter_name": "cpu_util", "counter_type": "gauge", "counter_volume": 1, "resource_id": "r",
            "timestamp": "2026-03-02T10:00:00Z"}
    for bad in ({"resource_metadata": None}, {"source": None}, {"project_id": 7}, {"counter_volume": True},
                {"counter_unit": None}, {"timestamp": None}, {"message_id": 5}):
        raw = orjson.dumps({**base, **bad})
        assert fast_sample_doc(raw) is None, bad
    assert fast_sample_doc(orjson.dumps(base)) == _model_doc(orjson.dumps(base))


RAWLOGS = st.fixed_dictionaries(
    {"host": _field(TEXT), "path": _field(TEXT), "lines": _field(st.lists(TEXT, max_size=3))},
    optional={
        "id": _field(TEXT), "component": _field(TEXT), "type": _field(TEXT),
        "offset": _field(st.integers(0, 1 << 40)), "inode": _field(st.integers(0, 1 << 40)),
        "read_at": _field(st.sampled_from(["2026-03-02T10:00:00Z", "2026-03-02 10:00:00.5+02:00", "bad",
                                           1772445600.5])),
        "tags": _field(st.lists(TEXT, max_size=2)), "peer": ODD,
    },
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RAWLOGS, st.sampled_from(["json", "msgpack"]))
def test_fast_rawlog_equals_the_model_or_declines(data: dict[str, Any], fmt: str) -> None:
    if "read_at" not in data:
        data["read_at"] = "2026-03-02T10:00:00Z"  # the default is "now": the two would differ by microseconds
    raw = _wire(data, fmt)
    if raw is None:
        return  # not encodable on this wire (integers past 64 bits in msgpack)
    fast = fast_rawlog(raw)
    if fast is None:
        return
    model = decode(RawLog, raw)
    assert fast.to_dict() == model.to_dict() and fast.model_extra == model.model_extra, data


EVENTS = st.fixed_dictionaries(
    {"@timestamp": _field(st.sampled_from(["2026-03-02T10:00:00Z", "2026-03-02T10:00:00.112000Z",
                                           "2026-03-02T10:00:00.5+00:00", "2026-03-02 10:00:00.5+02:00",
                                           "2026-03-02T10:00:00", " 2026-03-02T10:00:00Z", "bad", 1772445600.5,
                                           "2026-03-02T10:00:00,112000Z", "2026-03-02T10:00:00.000000Z",
                                           "2026-03-02T10:00:00.112Z", "2026-W09-1T10:00:00.112000Z",
                                           "2026-061T10:00:00.112000Z", "2026-03-02T10:00Z"]))},
    optional={
        "id": _field(TEXT), "host": _field(TEXT), "component": _field(TEXT), "type": _field(TEXT),
        "level": _field(st.one_of(st.none(), TEXT)), "logger": _field(st.one_of(st.none(), TEXT)),
        "pid": _field(st.one_of(st.none(), st.integers(-(1 << 62), 1 << 62), st.sampled_from(["123", "0123", "x"]))),
        "request_id": _field(st.one_of(st.none(), TEXT)), "instance_id": _field(TEXT),
        "message": _field(TEXT), "tags": _field(st.lists(TEXT, max_size=2)),
        "timestamp": _field(TEXT), "status": ODD, "http": ODD,
    },
)


def _model_event(raw: bytes) -> dict[str, Any] | None:
    return _model(raw, Event, Event.to_dict)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS, st.sampled_from(["json", "msgpack"]))
def test_fast_event_equals_the_model_or_declines(data: dict[str, Any], fmt: str) -> None:
    """A server behind a broker takes each event this way: the model's dict, key order included."""
    raw = _wire(data, fmt)
    if raw is None:
        return  # not encodable on this wire (integers past 64 bits in msgpack)
    fast = fast_event(raw)
    if fast is None:
        return
    model = _model_event(raw)
    assert model is not None, data
    assert list(fast.items()) == list(model.items()), data


def test_fast_event_takes_what_the_parse_stage_publishes() -> None:
    """The usual event is never declined: the fast path is the path (and garbage is declined)."""
    from telemetry.parse import Parser

    line = ("2026-03-02 09:14:07.112 2931 INFO nova.compute.manager [req-5f2c8a1b-0d7c-4e0b-9a51-6f7c9d1e2a3b "
            "6f1c0a3b 9a8b7c6d - default default] [instance: 0f5e2c4a-1b3d-4e6f-8a9b-0c1d2e3f4a5b] Took 1.5 s")
    published = Parser(types=["openstack"]).parse_dict([line], "openstack", {"host": "cn01", "path": "/l", "tags": []},
                                                       event_id="abc-10")
    assert published is not None
    raw = orjson.dumps(published)
    assert fast_event(raw) == published == _model_event(raw)
    for bad in (b"", b"[]", b"{", b'{"@timestamp": 5}', b'{"@timestamp": "2026-03-02T10:00:00Z", "pid": 1.5}'):
        assert fast_event(bad) is None, bad


def test_an_event_read_by_several_groups_is_decoded_once_and_the_memory_stays_bounded() -> None:
    """Behind a broker each consumer group gets its own copy of an event's bytes: the rules and the exporter
    share one decoded dict (as they share the publisher's on the in-process bus), a few thousand at most."""
    from telemetry.fastcodec import _SharedEvents
    from telemetry.models import encode

    shared = _SharedEvents(size=3)
    now = datetime.now(timezone.utc)
    values = [encode(Event(**{"@timestamp": now}, host="cn01", message=f"line {i}"), "json") for i in range(8)]
    first = shared.get(values[0])
    again = shared.get(bytes(bytearray(values[0])))  # another group's copy: equal bytes, another object
    assert again is first and first == fast_event(values[0]) and shared.hits == 1
    for v in values[1:]:
        shared.get(v)
    assert len(shared._new) + len(shared._old) <= 2 * 3
    later = shared.get(values[0])  # long forgotten: decoded anew, the same event
    assert later == first and later is not first
    assert shared.get(b"\xff not json") is None and shared.get(b"\xff not json") is None and shared.hits == 1
